//! The voting, locking and commit rules and their durability, one node driven by hand: one
//! vote per view, to the next leader; the safe-node rule (three-chain) and the timeout
//! certificate's check (two-chain); commits on consecutive views only; every vote and timeout
//! durable before it leaves; a restored node keeps its vote, its lock and its view.

use agora_consensus::{Action, ChainView, Context, InMemoryMempool, MempoolLimits, Protocol};
use agora_crypto::{DirectCheck, domain};
use agora_hotstuff::{
    ChainRule, HotStuff, HotStuffConfig, HotStuffMessage, HotStuffTimer, LeaderRule, Proposal,
    TimeoutCertificate, timeout_statement,
};
use agora_types::bytes::Bytes;
use agora_types::{
    Batch, Block, Certificate, Committee, Height, NodeId, Phase, Round, SecretKey, Statement, Vote,
};

const DELTA: u64 = 50_000_000;
const ME: NodeId = NodeId(3);

/// Node 3 of 4 under round robin (view v led by node v mod 4).
struct Harness {
    node: HotStuff,
    chain: ChainRule,
    keys: Vec<SecretKey>,
    mempool: InMemoryMempool,
    actions: Vec<Action<HotStuffMessage, HotStuffTimer>>,
    now: u64,
}

fn fresh(keys: &[SecretKey], chain: ChainRule) -> HotStuff {
    let (committee, _) = Committee::deterministic(1, 4).unwrap();
    let mut config = HotStuffConfig::new(DELTA).with_chain(chain);
    config.leader = LeaderRule::RoundRobin;
    HotStuff::new(config, committee, ME, keys[3].clone()).expect("a valid configuration")
}

impl Harness {
    fn new(chain: ChainRule) -> Self {
        let (_, keys) = Committee::deterministic(1, 4).unwrap();
        let mut h = Self {
            node: fresh(&keys, chain),
            chain,
            keys,
            mempool: InMemoryMempool::new(MempoolLimits::default()),
            actions: Vec::new(),
            now: 0,
        };
        h.with_ctx(|node, ctx| node.on_start(ctx));
        h
    }

    fn with_ctx(&mut self, f: impl FnOnce(&mut HotStuff, &mut agora_consensus::Ctx<'_, HotStuff>)) {
        self.now += 1_000;
        let mut check = DirectCheck;
        let mut ctx = Context::new(self.now, ME, &mut self.actions, &mut self.mempool, &mut check);
        f(&mut self.node, &mut ctx);
    }

    fn deliver(&mut self, from: u16, message: HotStuffMessage) {
        self.with_ctx(|node, ctx| node.on_message(ctx, NodeId(from), message));
    }

    fn fire(&mut self) {
        let v = self.node.view();
        self.with_ctx(|node, ctx| node.on_timer(ctx, HotStuffTimer::View(v)));
    }

    /// A QC of `block` signed by nodes 0, 1 and 2.
    fn qc(&self, block: &Block) -> Certificate {
        let s = Statement {
            phase: Phase::Vote,
            round: block.round(),
            height: Height(0),
            value: block.digest(),
        };
        Certificate::new(
            s,
            (0..3u16).map(|i| {
                (NodeId(i), Vote::sign(s, NodeId(i), &self.keys[usize::from(i)]).signature)
            }),
        )
    }

    /// A timeout certificate of `view` by nodes 0, 1 and 2, reporting `high` (whose QC is
    /// `high_qc`) for node 0 and genesis for the others.
    fn tc(&self, view: u64, high_qc: Option<Certificate>) -> TimeoutCertificate {
        let high = high_qc.as_ref().map_or(0, |c| c.statement().round.0);
        let timeouts = (0..3u16)
            .map(|i| {
                let reported = if i == 0 { high } else { 0 };
                let vote = Vote::sign(
                    timeout_statement(view, reported),
                    NodeId(i),
                    &self.keys[usize::from(i)],
                );
                (NodeId(i), reported, vote.signature)
            })
            .collect();
        TimeoutCertificate { view, timeouts, high_qc }
    }

    /// The leader of `view`'s proposal of a block on `parent` (with `parent`'s QC unless it
    /// is genesis), carrying `tc`.
    fn proposal(
        &self,
        parent: &Block,
        view: u64,
        stamp: u64,
        tc: Option<TimeoutCertificate>,
    ) -> Proposal {
        let proposer = (view % 4) as u16;
        let block = Block::new(
            parent.digest(),
            Round(view),
            Height(parent.height().0 + 1),
            NodeId(proposer),
            stamp,
            Batch::empty(),
        );
        let signature =
            self.keys[usize::from(proposer)].sign(&domain::PROPOSAL, block.digest().as_bytes());
        let justify = (parent.height().0 > 0).then(|| self.qc(parent));
        Proposal { block, signature, justify, tc }
    }

    /// Node 3's block votes sent so far, in order, with their recipients.
    fn sent_votes(&self) -> Vec<(NodeId, u64)> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { to, message: HotStuffMessage::Vote(v) } if v.voter == ME => {
                    Some((*to, v.statement.round.0))
                }
                _ => None,
            })
            .collect()
    }

    /// Whether node 3 voted for `block`: sent to the next leader, or (when node 3 leads the
    /// next view) counted at home, which its journal record shows.
    fn voted_for(&self, block: &Block) -> bool {
        let sent = self.actions.iter().any(|a| {
            matches!(a, Action::Send { message: HotStuffMessage::Vote(v), .. } if v.statement.value == block.digest())
        });
        let at_home = (block.round().0 + 1) % 4 == u64::from(ME.0)
            && self.node.last_voted_view() >= block.round().0
            && self.node.stats().votes_cast > 0
            && self.node.block_views().iter().any(|b| b.digest == block.digest() && b.votes > 0);
        sent || at_home
    }

    fn commits(&self) -> Vec<u64> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Commit { block, .. } => Some(block.round().0),
                _ => None,
            })
            .collect()
    }

    /// What a driver's journal would hand a restarted engine.
    fn journal(&self) -> Vec<Bytes> {
        agora_consensus::journal_of(&self.actions)
    }

    fn restart_from(&mut self, journal: &[Bytes]) {
        self.node = fresh(&self.keys, self.chain);
        self.node.restore(journal).expect("the engine restores from its own records");
        self.actions.clear();
        self.with_ctx(|node, ctx| node.on_start(ctx));
    }

    /// Blocks of views 1, 2, 3 in a chain, each delivered with its parent's QC, and the QC of
    /// the third in a fourth proposal (view 4, extending it).
    fn chain_of_four(&mut self) -> Vec<Block> {
        let mut blocks = vec![Block::genesis()];
        for view in 1..=4 {
            let p = self.proposal(blocks.last().unwrap(), view, view, None);
            blocks.push(p.block.clone());
            self.deliver((view % 4) as u16, HotStuffMessage::Propose(p));
        }
        blocks
    }
}

#[test]
fn a_node_votes_once_per_view_and_sends_its_vote_to_the_next_leader() {
    let mut h = Harness::new(ChainRule::Three);
    let g = Block::genesis();
    let b1 = h.proposal(&g, 1, 1, None);
    let other = h.proposal(&g, 1, 2, None);
    h.deliver(1, HotStuffMessage::Propose(b1.clone()));
    h.deliver(1, HotStuffMessage::Propose(other.clone()));
    assert_eq!(h.sent_votes(), vec![(NodeId(2), 1)], "one vote, to the leader of view 2");
    assert!(h.voted_for(&b1.block) && !h.voted_for(&other.block));
    // The proposal of view 2 carries b1's QC: node 3 enters view 2 and votes again, at home
    // (it leads view 3).
    let b2 = h.proposal(&b1.block, 2, 3, None);
    h.deliver(2, HotStuffMessage::Propose(b2.clone()));
    assert_eq!(h.node.view(), 2);
    assert_eq!(h.sent_votes(), vec![(NodeId(2), 1)]);
    assert!(h.voted_for(&b2.block));
    assert_eq!(h.node.stats().votes_cast, 2);
}

#[test]
fn three_chain_locks_on_the_two_chain_and_commits_on_three_consecutive_views() {
    let mut h = Harness::new(ChainRule::Three);
    let blocks = h.chain_of_four();
    // View 4's proposal carries the QC of view 3: b1 ← b2 ← b3 are consecutive.
    assert_eq!(h.commits(), vec![1]);
    assert_eq!((h.node.high_qc_view(), h.node.locked_view()), (3, 2));
    // A proposal of view 5 on b1 (a fork below the lock, whose QC is older than the lock),
    // with the timeout certificate of view 4: refused.
    let fork = h.proposal(&blocks[1], 5, 50, Some(h.tc(4, Some(h.qc(&blocks[3])))));
    h.deliver(1, HotStuffMessage::Propose(fork.clone()));
    assert_eq!(h.node.view(), 5);
    assert!(!h.voted_for(&fork.block));
    assert_eq!(h.node.stats().votes_refused, 1);
    // The safe-node rule's liveness clause: a proposal of view 6 whose QC (of b3) is newer
    // than the lock gets the vote, though it does not extend the block of view 4.
    let newer = h.proposal(&blocks[3], 6, 60, Some(h.tc(5, Some(h.qc(&blocks[3])))));
    h.deliver(2, HotStuffMessage::Propose(newer.clone()));
    assert!(h.voted_for(&newer.block));
}

#[test]
fn two_chain_commits_on_two_consecutive_views_and_votes_after_a_timeout_only_above_the_tc() {
    let mut h = Harness::new(ChainRule::Two);
    let blocks = h.chain_of_four();
    // The QC of view 3 (b2 ← b3 consecutive) commits b2; the QC of view 2 had committed b1.
    assert_eq!(h.commits(), vec![1, 2]);
    assert_eq!((h.node.high_qc_view(), h.node.locked_view()), (3, 3));
    // View 5 after a timeout certificate whose node 0 reported the QC of view 3: a block on
    // b2 (QC of view 2) is below it, refused; in view 6 one on b3 is not, voted.
    let low = h.proposal(&blocks[2], 5, 50, Some(h.tc(4, Some(h.qc(&blocks[3])))));
    h.deliver(1, HotStuffMessage::Propose(low.clone()));
    assert!(!h.voted_for(&low.block));
    let high = h.proposal(&blocks[3], 6, 60, Some(h.tc(5, Some(h.qc(&blocks[3])))));
    h.deliver(2, HotStuffMessage::Propose(high.clone()));
    assert!(h.voted_for(&high.block));
}

#[test]
fn no_commit_without_consecutive_views() {
    let mut h = Harness::new(ChainRule::Two);
    let g = Block::genesis();
    // b1 (view 1), then b3 (view 3) on it after a timeout certificate of view 2, then b4
    // carrying b3's QC: b1 ← b3 is not consecutive, so b1 is not committed by b3's QC.
    let b1 = h.proposal(&g, 1, 1, None);
    h.deliver(1, HotStuffMessage::Propose(b1.clone()));
    let b3 = h.proposal(&b1.block, 3, 3, Some(h.tc(2, Some(h.qc(&b1.block)))));
    h.deliver(3, HotStuffMessage::Propose(b3.clone()));
    let b4 = h.proposal(&b3.block, 4, 4, None);
    h.deliver(0, HotStuffMessage::Propose(b4.clone()));
    assert!(h.commits().is_empty(), "{:?}", h.commits());
    // b5 on b4: b3 ← b4 consecutive, so b3 commits, and b1 with it.
    h.deliver(1, HotStuffMessage::Propose(h.proposal(&b4.block, 5, 5, None)));
    assert_eq!(h.commits(), vec![1, 3]);
}

#[test]
fn a_vote_and_a_timeout_are_durable_before_they_leave() {
    let mut h = Harness::new(ChainRule::Two);
    let b1 = h.proposal(&Block::genesis(), 1, 1, None);
    h.deliver(1, HotStuffMessage::Propose(b1.clone()));
    h.deliver(2, HotStuffMessage::Propose(h.proposal(&b1.block, 2, 2, None)));
    h.fire();
    // The first time each vote or timeout of node 3 leaves, its record is the action before.
    let mut seen = Vec::new();
    let mut spoke = 0;
    for (i, a) in h.actions.iter().enumerate() {
        let own = match a {
            Action::Send { message: HotStuffMessage::Vote(v), .. } if v.voter == ME => Some(*v),
            Action::Broadcast { message: HotStuffMessage::Timeout(t) } => Some(t.vote),
            _ => None,
        };
        if let Some(vote) = own.filter(|v| !seen.contains(v)) {
            seen.push(vote);
            spoke += 1;
            assert!(matches!(h.actions[i - 1], Action::Persist { .. }), "{:?}", h.actions[i - 1]);
        }
    }
    // (Its vote of view 2 stays home: node 3 leads view 3.)
    assert_eq!(spoke, 2, "the vote of view 1, and the timeout of view 2");
    // Timing out counts as having voted in the view: nothing more is signed in it.
    assert_eq!(h.node.last_voted_view(), 2);
}

#[test]
fn a_restarted_node_keeps_its_vote_lock_and_view_and_times_out_where_it_is() {
    let mut h = Harness::new(ChainRule::Three);
    let blocks = h.chain_of_four();
    h.fire();
    let (view, locked, voted) = (h.node.view(), h.node.locked_view(), h.node.last_voted_view());
    let journal = h.journal();
    h.restart_from(&journal);
    assert_eq!(
        (h.node.view(), h.node.locked_view(), h.node.last_voted_view()),
        (view, locked, voted)
    );
    // A second proposal of view 4 gets no vote.
    let other = h.proposal(&blocks[3], 4, 99, None);
    h.deliver(0, HotStuffMessage::Propose(other.clone()));
    assert!(!h.voted_for(&other.block));
    // It moves on (a timeout certificate of view 4), and at its timer times out of view 5,
    // not again of view 4.
    h.deliver(0, HotStuffMessage::TimeoutCertificate(h.tc(4, Some(h.qc(&blocks[3])))));
    assert_eq!(h.node.view(), 5);
    h.fire();
    let timeouts: Vec<u64> = h
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Broadcast { message: HotStuffMessage::Timeout(t) } => {
                Some(t.vote.statement.round.0)
            }
            _ => None,
        })
        .collect();
    assert_eq!(timeouts, vec![5]);
    // Without its journal, once it has the chain again, it votes for the second proposal of
    // view 4: a double vote.
    h.restart_from(&[]);
    for view in 1..=3 {
        let p = h.proposal(&blocks[view - 1], view as u64, view as u64, None);
        h.deliver((view % 4) as u16, HotStuffMessage::Propose(p));
    }
    h.deliver(0, HotStuffMessage::Propose(other.clone()));
    assert!(h.voted_for(&other.block));
}
