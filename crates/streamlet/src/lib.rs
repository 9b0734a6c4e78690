//! Streamlet (Chan & Shi, "Streamlet: Textbook Streamlined Blockchains", AFT 2020) as a sans-IO
//! engine for agora.
//!
//! Time is divided into epochs of 2Δ; epoch `e` starts at `t_e = 2Δ(e − 1)` (epoch 0 belongs to
//! genesis). Each epoch has a leader, chosen by a public hash of the epoch number (default) or
//! round robin. The paper's rules, and where they live here:
//!
//! - **Propose** (`Streamlet::propose`): "at the start of its epoch, the leader proposes a
//!   block extending one of the longest notarized chains it has seen", carrying a batch from the
//!   mempool (bounded by count and bytes). The leader signs the block digest, so that echoed
//!   copies stay attributable.
//! - **Vote** (`Streamlet::try_vote`): "every node votes for the first proposal it sees from
//!   the epoch's leader, as long as the proposed block extends one of the longest notarized
//!   chains it has seen". A node votes at most once per epoch, only in the current epoch.
//! - **Notarize**: a block with votes from at least ⌈2n/3⌉ distinct members is notarized (the
//!   shared [`VoteKeeper`]; echoed copies of a vote never count twice).
//! - **Finalize** (the block tree): "if in any notarized chain there are three adjacent blocks
//!   with consecutive epoch numbers, the prefix of the chain up to the second of the three is
//!   final". Newly final blocks are committed in log order, exactly once.
//! - **Echo**: "every node forwards each message it receives for the first time to all others"
//!   (on by default; without it liveness fails even in synchrony, Cohen & Malkhi 2020). Echoed
//!   copies have their own message kinds, so their cost shows in the metrics.
//!
//! Beyond the paper, for a system that runs: transactions are forwarded to the next two leaders
//! in batches (flushed when [`StreamletConfig::forward_batch_max`] are waiting, and after every
//! message and timer the node handles), and re-forwarded at mid-epoch while still pending, not on
//! the chain being extended, and not forwarded for
//! [`StreamletConfig::reforward_after_epochs`]; blocks whose parent is unknown wait (bounded) for it; messages for epochs far in the
//! future are dropped; every drop is counted by reason ([`StreamletStats`]).
//!
//! Catching up: in a stall (nothing final for [`StreamletConfig::resync_after_epochs`]) a node
//! sends again the proposals and votes of its unfinalized chain (`resync`), and a node that
//! holds proposals whose parents it never saw asks their proposers for the finalized blocks
//! above its own finalized height ([`StreamletMessage::Sync`], answered from the last
//! [`StreamletConfig::sync_blocks_max`] finalized blocks with their notarizations). Without the
//! second, a node cut off while the others finalized could never rejoin, and when it is needed
//! for every quorum the chain stops (`tests/scenarios.rs`,
//! `a_node_left_behind_the_finalized_tip_catches_up_when_its_quorum_needs_it`).

mod tree;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agora_consensus::{
    BatchLimits, BlockStatus, BlockView, ChainView, Ctx, HashedLeader, LeaderElection,
    MempoolError, Message, Protocol, RoundRobin, Submitted, Tamper, VoteKeeper, VoteOutcome,
};
use agora_crypto::{Digest, SecretKey, Signature, domain};
use agora_types::{
    Batch, Block, Certificate, Committee, Epoch, Height, NodeId, Phase, Round, Statement,
    Transaction, Vote,
};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use crate::tree::BlockTree;

/// How epoch leaders are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderRule {
    /// A public hash of the epoch number (and this seed), reduced mod n: the paper's choice.
    Hashed {
        /// Public seed of the hash.
        seed: u64,
    },
    /// Epoch `e` is led by node `e mod n`.
    RoundRobin,
}

impl LeaderRule {
    /// The leader of `epoch` in a committee of `n`.
    pub fn leader(&self, n: u16, epoch: Epoch) -> NodeId {
        match *self {
            LeaderRule::Hashed { seed } => HashedLeader::new(n, seed).leader(Round(epoch.0)),
            LeaderRule::RoundRobin => RoundRobin::new(n).leader(Round(epoch.0)),
        }
    }
}

/// Settings of a Streamlet node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamletConfig {
    /// Δ: the assumed bound on message delay after GST. An epoch lasts 2Δ.
    pub delta_ns: u64,
    /// Leader schedule.
    pub leader: LeaderRule,
    /// Forward every message seen for the first time to all others.
    pub echo: bool,
    /// Bounds of a proposed batch (and of a re-forward).
    pub batch: BatchLimits,
    /// Proposals held while their parent is unknown, at most.
    pub orphans_max: usize,
    /// Encoded bytes of the proposals held while their parent is unknown, at most.
    pub orphan_bytes_max: usize,
    /// Validly signed proposals taken per epoch, at most. An honest leader sends one; a second
    /// is already evidence of equivocation, and more would only fill memory.
    pub proposals_per_epoch_max: usize,
    /// Messages for epochs more than this ahead of the current one are dropped.
    pub future_epochs_max: u64,
    /// Votes held by the vote keeper, at most.
    pub votes_max: usize,
    /// Finalized blocks kept for [`ChainView`], at most.
    pub history_max: usize,
    /// Finalized transaction ids remembered to refuse proposals that repeat them.
    pub finalized_memory: usize,
    /// Submitted transactions wait to be forwarded to the next leaders until this many have
    /// gathered, or until the node next handles a message or timer: one message carries many.
    pub forward_batch_max: usize,
    /// A pending transaction is re-forwarded only once this many epochs have passed since it
    /// was last forwarded (by this node or to it), so a backlog is not resent every epoch.
    pub reforward_after_epochs: u64,
    /// When nothing has been finalized for this many epochs, the node sends again, to all, the
    /// proposals it adopted above the finalized tip and its own votes for them (and again every
    /// this many epochs while the stall lasts). Votes or blocks lost before GST are never sent
    /// again otherwise, and nodes that disagree about the longest notarized chain stay stuck.
    pub resync_after_epochs: u64,
    /// Finalized blocks kept, each with its proposer's signature and its notarization, to send
    /// a node that fell behind the finalized tip (it asks with [`StreamletMessage::Sync`]). A
    /// node further behind than this cannot catch up from its peers.
    pub sync_blocks_max: usize,
    /// A deliberately broken rule, for proving that tests catch it. Never set outside tests.
    pub weaken: Option<StreamletWeakening>,
}

/// Deliberate bugs ("mutants") the swarm campaign must catch, kept so that it cannot silently
/// lose its teeth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamletWeakening {
    /// Notarization with one vote fewer than ⌈2n/3⌉.
    QuorumOneSmaller,
    /// Vote for any proposal that extends the finalized chain, not only a longest notarized one.
    VoteExtendsFinalized,
}

impl StreamletConfig {
    /// Streamlet with the given Δ, hashed leaders (seed 0), echo on, and default bounds.
    pub fn new(delta_ns: u64) -> Self {
        Self {
            delta_ns,
            leader: LeaderRule::Hashed { seed: 0 },
            echo: true,
            batch: BatchLimits::default(),
            orphans_max: 1_024,
            orphan_bytes_max: 32 << 20,
            proposals_per_epoch_max: 2,
            future_epochs_max: 64,
            votes_max: 1 << 20,
            history_max: 100_000,
            finalized_memory: 1_000_000,
            forward_batch_max: 256,
            reforward_after_epochs: 4,
            resync_after_epochs: 8,
            sync_blocks_max: 64,
            weaken: None,
        }
    }

    /// Start of `epoch`: `2Δ(e − 1)`.
    pub fn epoch_start_ns(&self, epoch: Epoch) -> u64 {
        epoch.0.saturating_sub(1).saturating_mul(2 * self.delta_ns)
    }

    /// The epoch in progress at `now_ns`.
    pub fn epoch_at(&self, now_ns: u64) -> Epoch {
        Epoch(now_ns / (2 * self.delta_ns) + 1)
    }
}

/// A block proposal, signed by its proposer over the block digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposed block (its round is the epoch).
    pub block: Block,
    /// The proposer's signature over the block digest under `agora/proposal/v1`.
    pub signature: Signature,
}

/// Streamlet's messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StreamletMessage {
    /// A leader's proposal.
    Propose(Proposal),
    /// A node's vote.
    Vote(Vote),
    /// A proposal forwarded by a node that received it (the echo rule).
    EchoPropose(Proposal),
    /// A vote forwarded by a node that received it.
    EchoVote(Vote),
    /// Client transactions on their way to upcoming leaders.
    Forward(Vec<Transaction>),
    /// A node that holds proposals whose parents it does not know asks for the finalized
    /// blocks above its own finalized height; the answer comes as echoes of their proposals and
    /// of the votes that notarized them.
    Sync {
        /// The asker's finalized height.
        finalized: Height,
    },
}

/// Proposals (and their echoes) are proposals; a node's own `Vote` is its vote (echoed votes are
/// other members').
impl Tamper for StreamletMessage {
    fn proposed_block(&self) -> Option<&Block> {
        match self {
            StreamletMessage::Propose(p) | StreamletMessage::EchoPropose(p) => Some(&p.block),
            _ => None,
        }
    }

    fn repropose(&self, block: Block, _signer: NodeId, key: &SecretKey) -> Option<Self> {
        // The signer a Streamlet proposal claims is its block's proposer.
        self.proposed_block()?;
        let signature = key.sign(&domain::PROPOSAL, block.digest().as_bytes());
        Some(StreamletMessage::Propose(Proposal { block, signature }))
    }

    fn own_vote(&self) -> Option<&Vote> {
        match self {
            StreamletMessage::Vote(v) => Some(v),
            _ => None,
        }
    }

    fn with_vote(&self, vote: Vote) -> Option<Self> {
        self.own_vote().map(|_| StreamletMessage::Vote(vote))
    }
}

impl Message for StreamletMessage {
    fn transactions(&self) -> &[Transaction] {
        match self {
            StreamletMessage::Propose(p) | StreamletMessage::EchoPropose(p) => {
                p.block.batch().transactions()
            }
            StreamletMessage::Forward(txs) => txs,
            _ => &[],
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            StreamletMessage::Propose(_) => "propose",
            StreamletMessage::Vote(_) => "vote",
            StreamletMessage::EchoPropose(_) => "echo-propose",
            StreamletMessage::EchoVote(_) => "echo-vote",
            StreamletMessage::Forward(_) => "forward",
            StreamletMessage::Sync { .. } => "sync",
        }
    }
}

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
    finalized_txs: FxHashSet<Digest>,
    finalized_txs_order: VecDeque<Digest>,
    /// Submitted here, not yet forwarded to the next leaders.
    to_forward: Vec<Transaction>,
    /// When each pending transaction was last forwarded, by this node or to it (bounded by
    /// `finalized_memory`; forgetting only makes a re-forward come early).
    forwarded_at: FxHashMap<Digest, Epoch>,
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
    stats: StreamletStats,
}

impl Streamlet {
    /// Node `me` of `committee`, signing with `key`.
    pub fn new(config: StreamletConfig, committee: Committee, me: NodeId, key: SecretKey) -> Self {
        assert!(config.delta_ns > 0, "Δ must be positive");
        let n = u16::try_from(committee.n()).expect("committees have at most 1024 members");
        let quorum = match config.weaken {
            Some(StreamletWeakening::QuorumOneSmaller) => committee.notarization_quorum() - 1,
            _ => committee.notarization_quorum(),
        };
        let keeper = VoteKeeper::new(quorum.max(1), config.votes_max);
        Self {
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
            finalized_txs: FxHashSet::default(),
            finalized_txs_order: VecDeque::new(),
            to_forward: Vec::new(),
            forwarded_at: FxHashMap::default(),
            adopted: BTreeMap::new(),
            adopted_count: 0,
            own_votes: BTreeMap::new(),
            finalized_proofs: BTreeMap::new(),
            synced_at: BTreeMap::new(),
            progress_epoch: Epoch(0),
            stats: StreamletStats::default(),
        }
    }

    /// The current epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The leader of `epoch`.
    pub fn leader_of(&self, epoch: Epoch) -> NodeId {
        self.config.leader.leader(self.n, epoch)
    }

    /// The last finalized block.
    pub fn finalized_tip(&self) -> &Block {
        self.tree.finalized_tip()
    }

    /// Length of the longest notarized chain this node has seen.
    pub fn notarized_height(&self) -> Height {
        self.tree.longest()
    }

    /// Drops and events, by reason.
    pub fn stats(&self) -> &StreamletStats {
        &self.stats
    }

    fn drop_message(&mut self, reason: &'static str) {
        *self.stats.dropped.entry(reason).or_default() += 1;
    }

    fn enter_epoch(&mut self, ctx: &mut Ctx<'_, Self>, epoch: Epoch) {
        self.epoch = epoch;
        let next = Epoch(epoch.0 + 1);
        let now = ctx.now_ns();
        ctx.set_timer(
            StreamletTimer::EpochStart(next),
            self.config.epoch_start_ns(next).saturating_sub(now),
        );
        let mid = self.config.epoch_start_ns(epoch) + self.config.delta_ns;
        if mid > now {
            ctx.set_timer(StreamletTimer::MidEpoch(epoch), mid - now);
        }
        self.first_proposal.retain(|e, _| *e >= epoch);
        let stall = self.config.resync_after_epochs.max(1);
        if epoch.0 >= self.progress_epoch.0.saturating_add(stall) {
            self.resync(ctx);
        }
        if self.leader_of(epoch) == self.me {
            self.propose(ctx);
        }
        self.try_vote_current(ctx);
    }

    /// The leader's rule: extend a longest notarized chain with a batch of pending transactions
    /// that are not already on that chain.
    fn propose(&mut self, ctx: &mut Ctx<'_, Self>) {
        let parent = self.tree.best_tip().clone();
        let in_chain = self.ids_on_unfinalized_chain(&parent.digest());
        let txs = ctx.mempool().select(&self.config.batch, &|id| in_chain.contains(id));
        let batch = Batch::new(txs).expect("batch limits are within the type's limits");
        let height = Height(parent.height().0 + 1);
        let block =
            Block::new(parent.digest(), Round(self.epoch.0), height, self.me, ctx.now_ns(), batch);
        let signature = self.key.sign(&domain::PROPOSAL, block.digest().as_bytes());
        let proposal = Proposal { block, signature };
        self.stats.proposals += 1;
        ctx.broadcast(StreamletMessage::Propose(proposal.clone()));
        self.on_proposal(ctx, self.me, proposal);
    }

    fn ids_on_unfinalized_chain(&self, tip: &Digest) -> FxHashSet<Digest> {
        self.tree
            .unfinalized_ancestry(tip)
            .into_iter()
            .flat_map(|b| b.batch().transactions().iter().map(Transaction::id))
            .collect()
    }

    /// First sight of a message: remember it (bounded by epoch) and say whether it is new.
    fn first_sight(&mut self, epoch: Epoch, seen: Seen) -> bool {
        self.seen.entry(epoch).or_default().insert(seen)
    }

    fn echo(
        &self,
        ctx: &mut Ctx<'_, Self>,
        from: NodeId,
        author: NodeId,
        message: StreamletMessage,
    ) {
        if !self.config.echo || from == self.me {
            return;
        }
        for to in
            (0..self.n).map(NodeId).filter(|to| *to != self.me && *to != from && *to != author)
        {
            ctx.send(to, message.clone());
        }
    }

    fn epoch_acceptable(&mut self, epoch: Epoch) -> bool {
        if epoch.0 > self.epoch.0.saturating_add(self.config.future_epochs_max) {
            self.drop_message("far-future epoch");
            return false;
        }
        if epoch < self.tree.finalized_tip().round().into_epoch() && epoch.0 > 0 {
            self.drop_message("epoch below finality");
            return false;
        }
        true
    }

    fn on_proposal(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, proposal: Proposal) {
        let block = &proposal.block;
        let epoch = Epoch(block.round().0);
        let digest = block.digest();
        if epoch.0 == 0 || block.proposer() != self.leader_of(epoch) {
            return self.drop_message("proposer is not the epoch's leader");
        }
        if !self.epoch_acceptable(epoch) {
            return;
        }
        if self.seen.get(&epoch).is_some_and(|s| s.contains(&Seen::Proposal(digest))) {
            return;
        }
        // Before the signature: the epoch's quota is spent only by validly signed proposals,
        // so checking it first lets a flood of extra ones cost no verification.
        if self.proposals_taken.get(&epoch).copied().unwrap_or(0)
            >= self.config.proposals_per_epoch_max
        {
            return self.drop_message("too many proposals in the epoch");
        }
        let signed = self.committee.verify_with(
            ctx.checker(),
            block.proposer(),
            &domain::PROPOSAL,
            digest.as_bytes(),
            &proposal.signature,
        );
        if signed.is_err() {
            return self.drop_message("bad proposal signature");
        }
        // Before echoing: a signed but oversized proposal must not be multiplied by n echoes.
        if let Err(reason) = self.within_limits(block) {
            return self.drop_message(reason);
        }
        *self.proposals_taken.entry(epoch).or_default() += 1;
        self.first_sight(epoch, Seen::Proposal(digest));
        self.echo(ctx, from, block.proposer(), StreamletMessage::EchoPropose(proposal.clone()));
        self.first_proposal.entry(epoch).or_insert(digest);
        if !self.tree.contains(&block.parent()) {
            let bytes = block.batch().encoded().len();
            if self.orphan_count >= self.config.orphans_max
                || self.orphan_bytes + bytes > self.config.orphan_bytes_max
            {
                return self.drop_message("orphan limit");
            }
            self.orphan_count += 1;
            self.orphan_bytes += bytes;
            self.orphans.entry(block.parent()).or_default().push(proposal);
            return;
        }
        self.adopt(ctx, proposal);
    }

    /// A proposal whose parent is known: check it, add it to the tree, vote if the rule allows,
    /// and adopt any orphans waiting for it.
    fn adopt(&mut self, ctx: &mut Ctx<'_, Self>, proposal: Proposal) {
        let mut queue = VecDeque::from([proposal]);
        while let Some(proposal) = queue.pop_front() {
            let block = proposal.block.clone();
            let digest = block.digest();
            if let Err(reason) = self.check_block(&block) {
                self.drop_message(reason);
                continue;
            }
            if self.adopted_count < self.config.orphans_max {
                self.adopted_count += 1;
                self.adopted.entry(Epoch(block.round().0)).or_default().push(proposal);
            }
            let finalized = self.tree.insert(block.clone(), ctx.now_ns());
            let statement = vote_statement(&block);
            self.tree.set_votes(&digest, self.keeper.signers(&statement));
            self.commit_finalized(ctx, finalized);
            self.try_vote(ctx, &block);
            if let Some(waiting) = self.orphans.remove(&digest) {
                self.orphan_count -= waiting.len();
                self.orphan_bytes -=
                    waiting.iter().map(|p| p.block.batch().encoded().len()).sum::<usize>();
                queue.extend(waiting);
            }
        }
    }

    /// The batch bounds, which need nothing but the block.
    fn within_limits(&self, block: &Block) -> Result<(), &'static str> {
        if block.batch().len() > self.config.batch.txs_max
            || block.batch().encoded().len() > self.config.batch.bytes_max.saturating_add(8)
        {
            return Err("batch over the limits");
        }
        Ok(())
    }

    /// Validity of a block's content, whoever proposed it.
    fn check_block(&self, block: &Block) -> Result<(), &'static str> {
        let parent = &self.tree.get(&block.parent()).ok_or("unknown parent")?.block;
        if block.height().0 != parent.height().0 + 1 {
            return Err("height is not parent + 1");
        }
        if block.round() <= parent.round() {
            return Err("epoch not after the parent's");
        }
        self.within_limits(block)?;
        let on_chain = self.ids_on_unfinalized_chain(&block.parent());
        let mut in_block = FxHashSet::default();
        for tx in block.batch().transactions() {
            let id = tx.id();
            if !in_block.insert(id) || on_chain.contains(&id) || self.finalized_txs.contains(&id) {
                return Err("repeats a transaction");
            }
        }
        Ok(())
    }

    /// The vote rule, for the block just adopted.
    fn try_vote(&mut self, ctx: &mut Ctx<'_, Self>, block: &Block) {
        let epoch = Epoch(block.round().0);
        let digest = block.digest();
        if epoch != self.epoch
            || self.last_voted >= epoch
            || self.first_proposal.get(&epoch) != Some(&digest)
            || !(self.tree.extends_longest(&block.parent())
                || self.config.weaken == Some(StreamletWeakening::VoteExtendsFinalized))
        {
            return;
        }
        self.last_voted = epoch;
        self.stats.votes_cast += 1;
        let vote = Vote::sign(vote_statement(block), self.me, &self.key);
        self.own_votes.insert(epoch, vote);
        ctx.broadcast(StreamletMessage::Vote(vote));
        self.on_vote(ctx, self.me, vote);
    }

    /// The current epoch's first proposal may become votable when a notarization arrives after
    /// it (its parent becomes the tip of a longest notarized chain).
    fn try_vote_current(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.last_voted >= self.epoch {
            return;
        }
        let Some(digest) = self.first_proposal.get(&self.epoch).copied() else { return };
        if let Some(entry) = self.tree.get(&digest) {
            let block = entry.block.clone();
            self.try_vote(ctx, &block);
        }
    }

    fn on_vote(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, vote: Vote) {
        let s = vote.statement;
        let epoch = Epoch(s.round.0);
        if s.phase != Phase::Vote || epoch.0 == 0 {
            return self.drop_message("not a Streamlet vote");
        }
        if !self.epoch_acceptable(epoch) {
            return;
        }
        if self.seen.get(&epoch).is_some_and(|seen| seen.contains(&Seen::Vote(vote.voter, s))) {
            return;
        }
        let outcome = match self.keeper.add(&vote, &self.committee, ctx.checker()) {
            Ok(outcome) => outcome,
            Err(_) => return self.drop_message("bad vote"),
        };
        self.first_sight(epoch, Seen::Vote(vote.voter, s));
        self.stats.equivocations = self.keeper.equivocations();
        self.echo(ctx, from, vote.voter, StreamletMessage::EchoVote(vote));
        match outcome {
            VoteOutcome::Counted { signers } => self.tree.set_votes(&s.value, signers),
            VoteOutcome::Certified(cert) => {
                self.tree.set_votes(&s.value, cert.signers().len());
                let finalized = self.tree.notarize(s.value, ctx.now_ns());
                self.commit_finalized(ctx, finalized);
                self.try_vote_current(ctx);
            }
            VoteOutcome::Duplicate => {}
            VoteOutcome::Stale => self.drop_message("stale vote"),
            VoteOutcome::Full => self.drop_message("vote limit"),
        }
    }

    fn commit_finalized(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        finalized: Result<Vec<Block>, tree::ConflictingFinality>,
    ) {
        let blocks = match finalized {
            Ok(blocks) => blocks,
            Err(_) => {
                self.stats.conflicting_finality += 1;
                return;
            }
        };
        if blocks.is_empty() {
            return;
        }
        for block in blocks {
            for tx in block.batch().transactions() {
                self.remember_finalized(tx.id());
                self.forwarded_at.remove(&tx.id());
            }
            self.keep_finalized_proof(&block);
            ctx.commit(block);
        }
        let horizon = Epoch(self.tree.finalized_tip().round().0);
        self.progress_epoch = self.epoch;
        let kept = self.adopted.split_off(&horizon);
        self.adopted = kept;
        self.adopted_count = self.adopted.values().map(Vec::len).sum();
        self.own_votes = self.own_votes.split_off(&horizon);
        self.keeper.prune_below(Round(horizon.0));
        self.seen.retain(|e, _| *e >= horizon);
        self.proposals_taken.retain(|e, _| *e >= horizon);
        self.prune_orphans();
    }

    /// Keeps a newly finalized block's signed proposal and notarization for [`Self::on_sync`]
    /// (before the votes below the new finalized tip are pruned).
    fn keep_finalized_proof(&mut self, block: &Block) {
        if self.config.sync_blocks_max == 0 {
            return;
        }
        let digest = block.digest();
        let epoch = Epoch(block.round().0);
        let proposal = self
            .adopted
            .get(&epoch)
            .and_then(|ps| ps.iter().find(|p| p.block.digest() == digest).cloned());
        let Some(proposal) = proposal else { return };
        let certificate = self.keeper.certificate_of(&vote_statement(block), None);
        self.finalized_proofs.insert(block.height(), (proposal, certificate));
        while self.finalized_proofs.len() > self.config.sync_blocks_max {
            self.finalized_proofs.pop_first();
        }
    }

    /// A member asks for the finalized blocks above its finalized height: send it, in height
    /// order, the kept proposals and the votes that notarized them, as echoes (they are
    /// checked like any proposal and vote). An honest node asks at most once per
    /// [`StreamletConfig::resync_after_epochs`], so a member is answered no more often than
    /// that: a Byzantine one cannot turn its two-byte requests into a stream of blocks.
    fn on_sync(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, finalized: Height) {
        if from == self.me || !self.committee.contains(from) {
            return;
        }
        let every = self.config.resync_after_epochs.max(1);
        if self.synced_at.get(&from).is_some_and(|e| self.epoch.0 < e.0.saturating_add(every)) {
            return self.drop_message("sync asked too soon");
        }
        self.synced_at.insert(from, self.epoch);
        let above = Height(finalized.0.saturating_add(1));
        for (proposal, certificate) in self.finalized_proofs.range(above..).map(|(_, p)| p) {
            ctx.send(from, StreamletMessage::EchoPropose(proposal.clone()));
            let statement = *certificate.statement();
            for (voter, signature) in certificate.signatures() {
                let vote = Vote { statement, voter: *voter, signature: *signature };
                ctx.send(from, StreamletMessage::EchoVote(vote));
            }
        }
    }

    fn remember_finalized(&mut self, id: Digest) {
        if self.finalized_txs.insert(id) {
            self.finalized_txs_order.push_back(id);
            if self.finalized_txs_order.len() > self.config.finalized_memory
                && let Some(old) = self.finalized_txs_order.pop_front()
            {
                self.finalized_txs.remove(&old);
            }
        }
    }

    fn prune_orphans(&mut self) {
        let horizon = self.tree.finalized_tip().round();
        let before = self.orphan_count;
        for waiting in self.orphans.values_mut() {
            waiting.retain(|p| p.block.round() > horizon);
        }
        self.orphans.retain(|_, w| !w.is_empty());
        self.orphan_count = self.orphans.values().map(Vec::len).sum();
        self.orphan_bytes =
            self.orphans.values().flatten().map(|p| p.block.batch().encoded().len()).sum();
        if self.orphan_count < before {
            *self.stats.dropped.entry("orphan below finality").or_default() +=
                (before - self.orphan_count) as u64;
        }
    }

    /// At mid-epoch: pending transactions not on the chain being extended go to the next leader
    /// again (a forward may have been lost, or its leader may have crashed).
    fn reforward(&mut self, ctx: &mut Ctx<'_, Self>) {
        // What waits to be forwarded goes first, so it is not counted as a backlog.
        self.flush_forwards(ctx);
        let next_leader = self.leader_of(Epoch(self.epoch.0 + 1));
        if next_leader == self.me || ctx.mempool().is_empty() {
            return;
        }
        let tip = self.tree.best_tip().digest();
        let in_chain = self.ids_on_unfinalized_chain(&tip);
        let (epoch, after) = (self.epoch, self.config.reforward_after_epochs);
        let forwarded_at = &self.forwarded_at;
        let txs = ctx.mempool().select(&self.config.batch, &|id| {
            in_chain.contains(id)
                || forwarded_at.get(id).is_some_and(|e| epoch.0.saturating_sub(e.0) < after)
        });
        if !txs.is_empty() {
            self.note_forwarded(&txs);
            ctx.send(next_leader, StreamletMessage::Forward(txs));
        }
    }

    /// A stall: send again, as echoes, the proposals of the chain this node extends with every
    /// vote counted for them, and its own votes above the finalized tip, which others may have
    /// lost (receivers that have them drop them at once, as any echo seen before).
    fn resync(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.progress_epoch = self.epoch;
        self.stats.resyncs += 1;
        // The chain this node would extend (its longest notarized one): what others need to
        // agree on the longest notarized chain. Forks that lost are not worth the bandwidth.
        let tip = self.tree.best_tip().digest();
        let chain: FxHashSet<Digest> =
            self.tree.unfinalized_ancestry(&tip).iter().map(|b| b.digest()).collect();
        for proposal in self.adopted.values().flatten() {
            if chain.contains(&proposal.block.digest()) {
                ctx.broadcast(StreamletMessage::EchoPropose(proposal.clone()));
                // Every vote counted for it, not only ours: a voter that crashed since cannot
                // send its own again, and its vote may be the one that notarized the block.
                let statement = vote_statement(&proposal.block);
                let certificate = self.keeper.certificate_of(&statement, Some(self.me));
                for (voter, signature) in certificate.signatures() {
                    let vote = Vote { statement, voter: *voter, signature: *signature };
                    ctx.broadcast(StreamletMessage::EchoVote(vote));
                }
            }
        }
        for vote in self.own_votes.values() {
            ctx.broadcast(StreamletMessage::Vote(*vote));
        }
        // Proposals waiting for parents this node never saw: it may have fallen behind the
        // others' finalized tip, and finalized blocks are never sent again unasked. Ask the
        // proposers of the newest ones, who had those parents.
        let finalized = self.tree.finalized_tip().height();
        let mut asked = BTreeSet::new();
        let newest = self.orphans.values().flatten().map(|p| (p.block.round(), p.block.proposer()));
        let mut newest: Vec<(Round, NodeId)> = newest.collect();
        newest.sort_unstable_by(|a, b| b.cmp(a));
        for (_, proposer) in newest {
            if proposer != self.me && asked.insert(proposer) {
                ctx.send(proposer, StreamletMessage::Sync { finalized });
            }
            if asked.len() == 2 {
                break;
            }
        }
    }

    /// Sends the transactions submitted here since the last flush to the next two leaders.
    fn flush_forwards(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.to_forward.is_empty() {
            return;
        }
        let txs = std::mem::take(&mut self.to_forward);
        self.note_forwarded(&txs);
        // The next proposal's leader, and the one after in case that leader is down.
        let leaders: BTreeSet<NodeId> = (1..=2)
            .map(|k| self.leader_of(Epoch(self.epoch.0 + k)))
            .filter(|l| *l != self.me)
            .collect();
        for leader in leaders {
            ctx.send(leader, StreamletMessage::Forward(txs.clone()));
        }
    }

    fn note_forwarded(&mut self, txs: &[Transaction]) {
        if self.forwarded_at.len() + txs.len() > self.config.finalized_memory {
            self.forwarded_at.clear();
        }
        self.forwarded_at.extend(txs.iter().map(|tx| (tx.id(), self.epoch)));
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
                            self.drop_message("mempool full");
                            break;
                        }
                    }
                }
                // Someone forwarded these just now: no need to resend them soon.
                self.note_forwarded(&accepted);
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

    fn on_transaction(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        tx: Transaction,
    ) -> Result<Submitted, MempoolError> {
        let outcome = ctx.mempool().insert(tx.clone())?;
        if outcome == Submitted::Accepted {
            self.to_forward.push(tx);
            if self.to_forward.len() >= self.config.forward_batch_max.min(self.config.batch.txs_max)
            {
                self.flush_forwards(ctx);
            }
        }
        Ok(outcome)
    }
}

impl ChainView for Streamlet {
    /// The live tree and the most recent pruned forks (so pictures show forks that lost).
    fn block_views(&self) -> Vec<BlockView> {
        let mut views: Vec<BlockView> = self
            .tree
            .entries()
            .chain(self.tree.dead_forks())
            .map(|e| BlockView {
                digest: e.block.digest(),
                parent: e.block.parent(),
                round: e.block.round(),
                height: e.block.height(),
                proposer: e.block.proposer(),
                txs: e.block.batch().len(),
                status: if e.finalized_at.is_some() {
                    BlockStatus::Finalized
                } else if e.notarized_at.is_some() {
                    BlockStatus::Notarized
                } else {
                    BlockStatus::Proposed
                },
                votes: e.votes,
                proposed_at_ns: e.block.header().created_at_ns,
                notarized_at_ns: e.notarized_at,
                finalized_at_ns: e.finalized_at,
            })
            .collect();
        views.sort_by_key(|v| (v.round, v.height, v.digest));
        views
    }
}
