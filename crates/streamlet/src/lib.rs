//! Streamlet (Chan & Shi, "Streamlet: Textbook Streamlined Blockchains", AFT 2020) as a sans-IO
//! engine for agora.
//!
//! Time is divided into epochs of 2Δ; epoch `e` starts at `t_e = 2Δ(e − 1)` (epoch 0 belongs to
//! genesis). Each epoch has a leader, chosen by a public hash of the epoch number (default) or
//! round robin. Each of the paper's steps (§3) has its file, with the pure chain logic beneath
//! them in `tree.rs` and the control flow in this file's [`Protocol`] impl:
//!
//! | file | what it holds |
//! |---|---|
//! | `config.rs` | settings, the leader schedule, the weakenings the swarm must catch |
//! | `messages.rs` | signed proposals, votes, echoes and sync messages |
//! | `epoch.rs` | §3 "Propose": epochs and proposals |
//! | `vote.rs` | §3 "Vote", notarization and echo |
//! | `finality.rs` | §3 "Finalize": committing, and the proofs kept to help others catch up |
//! | `tree.rs` | the block tree: notarized chains, finality, pruning |
//! | `catch_up.rs` | beyond the paper: forwarding, re-forwarding, resync, bounded orphans |
//! | `persist.rs` | beyond the paper: what a node journals before it speaks, and its restore |
//!
//! ## The rules
//!
//! Each rule in the words of Chan and Shi (§3 of the paper unless marked), the function that
//! implements it, and the test that pins it. Scenario tests are in `tests/scenarios.rs`, vote-rule
//! tests in `tests/vote_rule.rs`, the tree's in `tree.rs`, and the swarm's in `agora-lab`'s
//! `tests/swarm.rs`.
//!
//! | § | rule | function | pinned by |
//! |---|---|---|---|
//! | 3 | "every epoch has a designated leader chosen at random by a public hash function" | `config.rs` `LeaderRule::leader` | `a_permanently_crashed_node_under_round_robin_costs_one_block_in_four` |
//! | 3 | "at the start of its epoch, the leader proposes a block extending one of the longest notarized chains it has seen" | `epoch.rs` `enter_epoch`, `propose`; `tree.rs` `best_tip` | `happy_path_notarizes_at_t_plus_2_delta_and_finalizes_one_epoch_later`, `longest_notarized_chain_and_ties` |
//! | 3 | "every node votes for the first proposal it sees from the epoch's leader, as long as the proposed block extends one of the longest notarized chains it has seen" | `vote.rs` `on_proposal`, `try_vote`; `tree.rs` `extends_longest` | `votes_for_the_leaders_proposal_extending_the_longest_notarized_chain`, `the_vote_rule_refuses`, `twins_catch_streamlet_voting_for_anything_that_extends_the_finalized_chain` |
//! | 3 | a node votes at most once per epoch, and only in the current epoch | `vote.rs` `try_vote`, `epoch_acceptable` | `at_most_one_vote_per_epoch_even_after_a_notarization_changes_the_longest_chain` |
//! | 3 | "a block is notarized once it has votes from at least 2n/3 distinct nodes" | `vote.rs` `on_vote` (the shared [`VoteKeeper`]); `tree.rs` `notarize` | `the_campaign_catches_a_streamlet_quorum_one_vote_short`, `a_notarization_before_its_block_counts_when_the_block_arrives` |
//! | 3 | a proposal whose parent is not yet notarized gets the vote once it is (beyond the paper's wording, which assumes instant delivery) | `vote.rs` `try_vote_current` | `a_proposal_waiting_for_its_parents_notarization_gets_the_vote_when_it_comes` |
//! | 3 | "if in any notarized chain there are three adjacent blocks with consecutive epoch numbers, the prefix of the chain up to the second of the three is final" | `tree.rs` `three_consecutive`, `finalize_up_to` (asserted) | `three_consecutive_epochs_finalize_the_middle_block_not_the_third`, `a_gap_in_epochs_delays_finality_until_three_are_consecutive` |
//! | 3 | newly final blocks are output in log order, exactly once | `finality.rs` `commit_finalized` | `happy_path_notarizes_at_t_plus_2_delta_and_finalizes_one_epoch_later`, `an_equivocating_leader_gets_at_most_one_block_notarized` |
//! | 3 (its implicit echo) | "every node forwards each message it receives for the first time to all others" | `vote.rs` `first_sight`, `echo` | `echo_costs_messages_and_can_be_switched_off` |
//! | — | a crashed leader costs its epoch's block, not the chain | `epoch.rs` `enter_epoch` (the next epoch starts on the clock) | `a_leader_down_for_its_epoch_costs_one_block_and_delays_finality`, `f_plus_one_crashed_nodes_stop_everything_safely` |
//! | — | a node cut off while the others finalized fetches the finalized blocks with their notarizations | `finality.rs` `on_sync`, `keep_finalized_proof`; `catch_up.rs` `resync` | `a_node_left_behind_the_finalized_tip_catches_up_when_its_quorum_needs_it` |
//! | — | submissions go to the next two leaders, in batches; a backlog is re-forwarded only after it waited | `catch_up.rs` `flush_forwards`, `reforward` | `submissions_are_forwarded_in_batches_to_the_next_two_leaders`, `a_backlog_is_reforwarded_only_after_it_has_waited` |
//! | — | a leader's proposals per epoch are bounded, but a block this node saw notarized is taken beyond the bound, so a faulty leader cannot keep it out | `vote.rs` `on_proposal` | `a_notarized_proposal_is_taken_after_a_faulty_leader_spent_the_epochs_quota`, `streamlet_scenarios_that_once_failed` |
//! | 3 (its proof, for a node that crashes) | a node votes at most once per epoch across a crash: its vote is durable before it is sent | `vote.rs` `try_vote` (persist, then broadcast); `persist.rs` `restore_vote` | `a_vote_is_persisted_before_it_is_broadcast`, `a_restarted_node_never_votes_twice_in_an_epoch_and_an_amnesiac_one_does` |
//! | — | a restarted node keeps its notarized chain and resumes from its last checkpoint | `persist.rs` `checkpoint`, `restore_checkpoint`; `tree.rs` `BlockTree::rooted` | `a_restarted_node_keeps_its_notarized_chain`, `a_node_restarted_from_its_journal_rejoins_and_agrees`, `blocks_final_in_the_journal_are_committed_again_on_restart_with_their_notarizations` |
//! | — | dead forks, orphans and hostile floods stay bounded | `tree.rs` `prune`; `catch_up.rs` `prune_orphans` | `dead_forks_are_pruned_after_finality`, `a_million_hostile_messages_leave_state_and_memory_bounded` |
//!
//! ## In more detail
//!
//! Persistence: before a vote, a proposal or a notarization can shape any message, the node
//! appends a record of it to its journal through [`Context::persist`](agora_consensus::Context::persist), and the driver syncs it before
//! the message leaves. Each finalization writes a checkpoint (and so does an epoch start once
//! 64 records followed the last one), so the journal holds one checkpoint and the records after
//! it. `persist.rs` has the table of records and the rule each serves; [`Protocol::restore`]
//! replays them into a fresh engine.
//!
//! Proposals are signed over the block digest, so that echoed copies stay attributable; echoed
//! copies have their own message kinds, so their cost shows in the metrics. Echo is on by default:
//! without it liveness fails even in synchrony (Cohen & Malkhi 2020). Notarization uses the shared
//! [`VoteKeeper`], so echoed copies of a vote never count twice.
//!
//! Beyond the paper, for a system that runs: transactions are forwarded to the next two leaders in
//! batches (flushed when [`StreamletConfig::forward_batch_max`] are waiting, and after every
//! message and timer the node handles), and re-forwarded at mid-epoch while still pending, not on
//! the chain being extended, and not forwarded for [`StreamletConfig::reforward_after_epochs`];
//! blocks whose parent is unknown wait (bounded) for it; messages for epochs far in the future are
//! dropped; every drop is counted by reason ([`StreamletStats`]).
//!
//! Catching up: in a stall (nothing final for [`StreamletConfig::resync_after_epochs`]) a node
//! sends again the proposals and votes of its unfinalized chain (`resync`), and asks the
//! proposers of the newest proposals it holds (waiting for their parents, or adopted) for the
//! finalized blocks above its own finalized height ([`StreamletMessage::Sync`], answered from the last
//! [`StreamletConfig::sync_blocks_max`] finalized blocks with their notarizations). Without the
//! second, a node cut off while the others finalized could never rejoin, and when it is needed
//! for every quorum the chain stops (`tests/scenarios.rs`,
//! `a_node_left_behind_the_finalized_tip_catches_up_when_its_quorum_needs_it`).

mod catch_up;
mod config;
mod drop;
mod epoch;
mod finality;
mod messages;
mod persist;
mod tree;
mod vote;

pub use config::{LeaderRule, StreamletConfig, StreamletWeakening};
pub use drop::StreamletDrop;
pub use messages::{Proposal, StreamletMessage};

use std::collections::{BTreeMap, BTreeSet};

use agora_consensus::{
    BlockView, ChainView, ConfigError, Ctx, Equivocation, Forwarding, MempoolError, Protocol,
    RecentIds, RestoreError, Submitted, VoteKeeper,
};
use agora_crypto::{Digest, SecretKey};
use agora_types::bytes::Bytes;
use agora_types::{
    Block, Certificate, Committee, Epoch, Height, NodeId, Phase, Round, Statement, Transaction,
    Vote,
};
use serde::Serialize;

use crate::tree::BlockTree;

/// Streamlet's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamletTimer {
    /// The start of an epoch.
    EpochStart(Epoch),
    /// The middle of an epoch: pending transactions are re-forwarded.
    MidEpoch(Epoch),
}

/// What a node dropped or noticed, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamletStats {
    /// Messages dropped, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Equivocations detected (two votes of one member in one epoch).
    pub equivocations: u64,
    /// Finalizations refused because they would fork the finalized log (needs > f Byzantine).
    pub conflicting_finality: u64,
    /// Votes this node cast.
    pub votes_cast: u64,
    /// Blocks this node proposed.
    pub proposals: u64,
    /// Times this node sent its unfinalized proposals and votes again after a stall.
    pub resyncs: u64,
}

/// Identity of a message for the echo rule's "first time".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Proposal(Digest),
    Vote(NodeId, Statement),
}

/// One Streamlet node; see the crate docs.
#[derive(Debug)]
pub struct Streamlet {
    config: StreamletConfig,
    committee: Committee,
    n: u16,
    me: NodeId,
    key: SecretKey,
    epoch: Epoch,
    tree: BlockTree,
    keeper: VoteKeeper,
    /// The first valid proposal of each epoch's leader seen (only that one may get a vote).
    first_proposal: BTreeMap<Epoch, Digest>,
    last_voted: Epoch,
    orphans: BTreeMap<Digest, Vec<Proposal>>,
    orphan_count: usize,
    orphan_bytes: usize,
    /// Validly signed proposals taken, per epoch (pruned below finality).
    proposals_taken: BTreeMap<Epoch, usize>,
    seen: BTreeMap<Epoch, BTreeSet<Seen>>,
    finalized_txs: RecentIds,
    /// Submitted here and not yet forwarded to the next leaders, and when each pending
    /// transaction was last forwarded, by this node or to it (bounded by `finalized_memory`).
    forwarding: Forwarding,
    /// Proposals adopted above the finalized tip (at most `orphans_max`), to send again in a
    /// stall.
    adopted: BTreeMap<Epoch, Vec<Proposal>>,
    adopted_count: usize,
    /// This node's votes above the finalized tip, to send again in a stall.
    own_votes: BTreeMap<Epoch, Vote>,
    /// The last finalized blocks (at most `sync_blocks_max`), by height, each with its signed
    /// proposal and its notarization, for nodes that fell behind.
    finalized_proofs: BTreeMap<Height, (Proposal, Certificate)>,
    /// The epoch in which each member was last answered a SYNC (one answer per
    /// `resync_after_epochs` each).
    synced_at: BTreeMap<NodeId, Epoch>,
    /// The epoch of the last finalization (or resync) this node saw.
    progress_epoch: Epoch,
    /// The last epoch this node proposed in (a leader proposes once per epoch).
    last_proposed: Epoch,
    /// Records persisted since the last checkpoint.
    records_since_checkpoint: usize,
    /// Blocks that became final again while the journal was replayed, committed on start.
    recovered_commits: Vec<(Block, Vec<Certificate>)>,
    stats: StreamletStats,
}

impl Streamlet {
    /// Node `me` of `committee`, signing with `key`; an error names the first bad setting (see
    /// [`StreamletConfig::validate`]) or a `me` outside the committee.
    pub fn new(
        config: StreamletConfig,
        committee: Committee,
        me: NodeId,
        key: SecretKey,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        ConfigError::member(&committee, me)?;
        let n = u16::try_from(committee.n()).expect("committees have at most 1024 members");
        let quorum = if config.weakened(StreamletWeakening::QuorumOneSmaller) {
            committee.notarization_quorum() - 1
        } else {
            committee.notarization_quorum()
        };
        let keeper = VoteKeeper::new(quorum.max(1), config.votes_max);
        Ok(Self {
            tree: BlockTree::new(config.history_max),
            config,
            committee,
            n,
            me,
            key,
            epoch: Epoch(0),
            keeper,
            first_proposal: BTreeMap::new(),
            last_voted: Epoch(0),
            orphans: BTreeMap::new(),
            orphan_count: 0,
            orphan_bytes: 0,
            proposals_taken: BTreeMap::new(),
            seen: BTreeMap::new(),
            finalized_txs: RecentIds::new(config.finalized_memory),
            forwarding: Forwarding::new(config.finalized_memory),
            adopted: BTreeMap::new(),
            adopted_count: 0,
            own_votes: BTreeMap::new(),
            finalized_proofs: BTreeMap::new(),
            synced_at: BTreeMap::new(),
            progress_epoch: Epoch(0),
            last_proposed: Epoch(0),
            records_since_checkpoint: 0,
            recovered_commits: Vec::new(),
            stats: StreamletStats::default(),
        })
    }

    /// The current epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The leader of `epoch`.
    pub fn leader_of(&self, epoch: Epoch) -> NodeId {
        self.config.leader.leader(self.n, Round(epoch.0))
    }

    /// The last finalized block.
    pub fn finalized_tip(&self) -> &Block {
        self.tree.finalized_tip()
    }

    /// Length of the longest notarized chain this node has seen.
    pub fn notarized_height(&self) -> Height {
        self.tree.longest()
    }

    /// Two votes of one member in one epoch for different blocks, as this node saw them (the
    /// first records kept).
    pub fn equivocation_evidence(&self) -> &[Equivocation] {
        self.keeper.evidence()
    }

    /// Drops and events, by reason.
    pub fn stats(&self) -> &StreamletStats {
        &self.stats
    }

    fn drop_message(&mut self, reason: StreamletDrop) {
        *self.stats.dropped.entry(reason.as_str()).or_default() += 1;
    }
}

fn vote_statement(block: &Block) -> Statement {
    Statement {
        phase: Phase::Vote,
        round: block.round(),
        height: block.height(),
        value: block.digest(),
    }
}

trait IntoEpoch {
    fn into_epoch(self) -> Epoch;
}

impl IntoEpoch for Round {
    fn into_epoch(self) -> Epoch {
        Epoch(self.0)
    }
}

impl Protocol for Streamlet {
    type Message = StreamletMessage;
    type Timer = StreamletTimer;

    /// Epochs run in lock-step from time 0: a node (re)starting at `now` joins the epoch in
    /// progress, acting on it at once only if `now` is its start.
    fn on_start(&mut self, ctx: &mut Ctx<'_, Self>) {
        for (block, proof) in std::mem::take(&mut self.recovered_commits) {
            ctx.commit_proven(block, proof);
        }
        let now = ctx.now_ns();
        let epoch = self.config.epoch_at(now);
        if now == self.config.epoch_start_ns(epoch) {
            self.enter_epoch(ctx, epoch);
        } else {
            self.epoch = epoch;
            let next = Epoch(epoch.0 + 1);
            ctx.set_timer(StreamletTimer::EpochStart(next), self.config.epoch_start_ns(next) - now);
        }
    }

    /// Replays the journal: see the `persist` module for what each record is and why.
    fn restore(&mut self, records: &[Bytes]) -> Result<(), RestoreError> {
        self.restore_from(records)
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, message: StreamletMessage) {
        match message {
            StreamletMessage::Propose(p) | StreamletMessage::EchoPropose(p) => {
                self.on_proposal(ctx, from, p)
            }
            StreamletMessage::Vote(v) | StreamletMessage::EchoVote(v) => self.on_vote(ctx, from, v),
            StreamletMessage::Forward(mut txs) => {
                txs.truncate(self.config.batch.txs_max);
                let mut accepted = Vec::new();
                for tx in txs {
                    match ctx.mempool().insert(tx.clone()) {
                        Ok(Submitted::Accepted) => accepted.push(tx),
                        Ok(Submitted::Duplicate) => {}
                        Err(MempoolError::Full { .. }) => {
                            self.drop_message(StreamletDrop::MempoolFull);
                            break;
                        }
                    }
                }
                // Someone forwarded these just now: no need to resend them soon.
                self.forwarding.note(&accepted, self.epoch.0);
            }
            StreamletMessage::Sync { finalized } => self.on_sync(ctx, from, finalized),
        }
        self.flush_forwards(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, timer: StreamletTimer) {
        match timer {
            StreamletTimer::EpochStart(epoch) => self.enter_epoch(ctx, epoch),
            StreamletTimer::MidEpoch(epoch) if epoch == self.epoch => self.reforward(ctx),
            StreamletTimer::MidEpoch(_) => {}
        }
        self.flush_forwards(ctx);
    }

    fn on_accepted(&mut self, ctx: &mut Ctx<'_, Self>, tx: Transaction) {
        if self.forwarding.push(tx) >= self.config.forward_batch_max.min(self.config.batch.txs_max)
        {
            self.flush_forwards(ctx);
        }
    }
}

impl ChainView for Streamlet {
    /// The live tree and the most recent pruned forks (so pictures show forks that lost).
    fn block_views(&self) -> Vec<BlockView> {
        let mut views: Vec<BlockView> = self
            .tree
            .entries()
            .chain(self.tree.dead_forks())
            .map(|e| BlockView::of(&e.block, e.votes, e.notarized_at, e.finalized_at))
            .collect();
        views.sort_by_key(|v| (v.round, v.height, v.digest));
        views
    }
}
