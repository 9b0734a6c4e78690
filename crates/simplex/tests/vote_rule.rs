//! The vote rules and their durability, one node driven by hand: "vote for the first proposal
//! of the iteration's leader that extends a notarized blockchain; one vote per iteration";
//! every vote durable before it leaves; a finalize vote only for an iteration not skipped.

use agora_consensus::{Action, Context, InMemoryMempool, MempoolLimits, Protocol};
use agora_crypto::{Digest, DirectCheck, domain};
use agora_simplex::{LeaderRule, Proposal, Simplex, SimplexConfig, SimplexMessage, SimplexTimer};
use agora_types::bytes::Bytes;
use agora_types::{
    Batch, Block, Committee, Height, NodeId, Phase, Round, SecretKey, Statement, Vote,
};

const DELTA: u64 = 50_000_000;
const ME: NodeId = NodeId(3);

/// Node 3 of 4 under round robin (iteration h led by node h mod 4).
struct Harness {
    node: Simplex,
    keys: Vec<SecretKey>,
    mempool: InMemoryMempool,
    actions: Vec<Action<SimplexMessage, SimplexTimer>>,
    now: u64,
}

fn fresh(keys: &[SecretKey]) -> Simplex {
    let (committee, _) = Committee::deterministic(1, 4).unwrap();
    let mut config = SimplexConfig::new(DELTA);
    config.leader = LeaderRule::RoundRobin;
    Simplex::new(config, committee, ME, keys[3].clone()).expect("a valid configuration")
}

impl Harness {
    fn new() -> Self {
        let (_, keys) = Committee::deterministic(1, 4).unwrap();
        let mut h = Self {
            node: fresh(&keys),
            keys,
            mempool: InMemoryMempool::new(MempoolLimits::default()),
            actions: Vec::new(),
            now: 0,
        };
        h.with_ctx(|node, ctx| node.on_start(ctx));
        h
    }

    fn with_ctx(&mut self, f: impl FnOnce(&mut Simplex, &mut agora_consensus::Ctx<'_, Simplex>)) {
        self.now += 1_000;
        let mut check = DirectCheck;
        let mut ctx = Context::new(self.now, ME, &mut self.actions, &mut self.mempool, &mut check);
        f(&mut self.node, &mut ctx);
    }

    fn deliver(&mut self, from: u16, message: SimplexMessage) {
        self.with_ctx(|node, ctx| node.on_message(ctx, NodeId(from), message));
    }

    fn fire(&mut self) {
        let h = self.node.iteration();
        self.with_ctx(|node, ctx| node.on_timer(ctx, SimplexTimer::Timeout(h)));
    }

    fn proposal(&self, parent: &Block, iteration: u64, stamp: u64) -> Proposal {
        let proposer = (iteration % 4) as u16;
        let block = Block::new(
            parent.digest(),
            Round(iteration),
            Height(parent.height().0 + 1),
            NodeId(proposer),
            stamp,
            Batch::empty(),
        );
        let signature =
            self.keys[usize::from(proposer)].sign(&domain::PROPOSAL, block.digest().as_bytes());
        Proposal { block, signature }
    }

    fn vote(&self, voter: u16, phase: Phase, iteration: u64, value: Digest) -> Vote {
        let s = Statement { phase, round: Round(iteration), height: Height(0), value };
        Vote::sign(s, NodeId(voter), &self.keys[usize::from(voter)])
    }

    /// Node 3's votes sent so far, in order.
    fn sent_votes(&self) -> Vec<Vote> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Broadcast { message: SimplexMessage::Vote(v) } if v.voter == ME => Some(*v),
                _ => None,
            })
            .collect()
    }

    /// What a driver's journal would hand a restarted engine.
    fn journal(&self) -> Vec<Bytes> {
        agora_consensus::journal_of(&self.actions)
    }

    /// Node 3 crashes and starts again as a fresh engine restored from `journal`.
    fn restart_from(&mut self, journal: &[Bytes]) {
        self.node = fresh(&self.keys);
        self.node.restore(journal).expect("the engine restores from its own records");
        self.actions.clear();
        self.with_ctx(|node, ctx| node.on_start(ctx));
    }
}

fn votes_of(votes: &[Vote], phase: Phase) -> Vec<(u64, Digest)> {
    votes
        .iter()
        .filter(|v| v.statement.phase == phase)
        .map(|v| (v.statement.round.0, v.statement.value))
        .collect()
}

#[test]
fn a_node_votes_once_per_iteration_and_only_on_a_notarized_chain() {
    let mut h = Harness::new();
    let g = Block::genesis();
    let b1 = h.proposal(&g, 1, 1);
    let other = h.proposal(&g, 1, 2);
    h.deliver(1, SimplexMessage::Propose(b1.clone()));
    h.deliver(1, SimplexMessage::Propose(other.clone()));
    assert_eq!(votes_of(&h.sent_votes(), Phase::Vote), vec![(1, b1.block.digest())]);
    // A quorum notarizes b1: node 3 sends ⟨finalize, 1⟩ and moves to iteration 2.
    for voter in [0, 1] {
        h.deliver(voter, SimplexMessage::Vote(h.vote(voter, Phase::Vote, 1, b1.block.digest())));
    }
    assert_eq!(h.node.iteration(), 2);
    assert_eq!(votes_of(&h.sent_votes(), Phase::Finalize), vec![(1, b1.block.digest())]);
    // Iteration 2's first proposal extends genesis, but iteration 1 is not skipped: no
    // notarized chain of length 1 ends in genesis. A second, good one is not the first.
    h.deliver(2, SimplexMessage::Propose(h.proposal(&g, 2, 3)));
    h.deliver(2, SimplexMessage::Propose(h.proposal(&b1.block, 2, 4)));
    assert_eq!(votes_of(&h.sent_votes(), Phase::Vote).len(), 1);
    // The timer: a skip of 2, never a finalize vote for it, and then iteration 3 on ⊥₂.
    h.fire();
    assert_eq!(votes_of(&h.sent_votes(), Phase::Skip), vec![(2, Digest::ZERO)]);
    for voter in [0, 1] {
        h.deliver(voter, SimplexMessage::Vote(h.vote(voter, Phase::Skip, 2, Digest::ZERO)));
    }
    assert_eq!(h.node.iteration(), 3);
    assert_eq!(
        votes_of(&h.sent_votes(), Phase::Finalize).len(),
        1,
        "no finalize vote after a skip"
    );
    // Node 3 leads iteration 3 and extends b1 across the skipped iteration 2.
    let proposed: Vec<&Proposal> = h
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Broadcast { message: SimplexMessage::Propose(p) } => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(proposed.len(), 1);
    assert_eq!(
        (proposed[0].block.round(), proposed[0].block.parent()),
        (Round(3), b1.block.digest())
    );
}

#[test]
fn a_vote_is_durable_before_it_is_sent() {
    let mut h = Harness::new();
    let b1 = h.proposal(&Block::genesis(), 1, 1);
    h.deliver(1, SimplexMessage::Propose(b1));
    h.fire();
    // The first time each vote leaves (the timer also sends the block vote again).
    let mut seen = Vec::new();
    let vote_at: Vec<usize> = h
        .actions
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match a {
            Action::Broadcast { message: SimplexMessage::Vote(v) } if !seen.contains(v) => {
                seen.push(*v);
                Some(i)
            }
            _ => None,
        })
        .collect();
    assert_eq!(vote_at.len(), 2, "a block vote and a skip");
    for at in vote_at {
        assert!(
            matches!(h.actions[at - 1], Action::Persist { .. }),
            "the action before a vote is its record: {:?}",
            h.actions[at - 1]
        );
    }
}

#[test]
fn a_restarted_node_keeps_its_votes_and_an_amnesiac_one_does_not() {
    let mut h = Harness::new();
    let g = Block::genesis();
    let b1 = h.proposal(&g, 1, 1);
    let other = h.proposal(&g, 1, 2);
    h.deliver(1, SimplexMessage::Propose(b1.clone()));
    h.fire();
    let journal = h.journal();
    // From its journal: the vote for b1 and the skip of 1 are remembered. A second proposal
    // of iteration 1 gets no vote, and the timer sends the same skip again.
    h.restart_from(&journal);
    assert_eq!(h.node.iteration(), 1);
    h.deliver(1, SimplexMessage::Propose(other.clone()));
    h.fire();
    // (The timer sends its votes of the iteration again: the same ones.)
    let votes = h.sent_votes();
    assert_eq!(votes_of(&votes, Phase::Vote), vec![(1, b1.block.digest())]);
    assert_eq!(votes_of(&votes, Phase::Skip), vec![(1, Digest::ZERO)]);
    // The notarization of b1 reaches it: it skipped 1, so it sends no finalize vote.
    for voter in [0, 1, 2] {
        h.deliver(voter, SimplexMessage::Vote(h.vote(voter, Phase::Vote, 1, b1.block.digest())));
    }
    assert_eq!(h.node.iteration(), 2);
    assert_eq!(votes_of(&h.sent_votes(), Phase::Finalize), Vec::new());
    // Without its journal it votes for the second proposal too: a double vote.
    h.restart_from(&[]);
    h.deliver(1, SimplexMessage::Propose(other.clone()));
    assert_eq!(votes_of(&h.sent_votes(), Phase::Vote), vec![(1, other.block.digest())]);
}

#[test]
fn a_node_that_sent_finalize_never_skips_that_iteration_even_after_a_restart() {
    let mut h = Harness::new();
    let b1 = h.proposal(&Block::genesis(), 1, 1);
    h.deliver(1, SimplexMessage::Propose(b1.clone()));
    for voter in [0, 1] {
        h.deliver(voter, SimplexMessage::Vote(h.vote(voter, Phase::Vote, 1, b1.block.digest())));
    }
    assert_eq!(votes_of(&h.sent_votes(), Phase::Finalize), vec![(1, b1.block.digest())]);
    // Restarted from everything but the notarization's record: it knows it sent finalize for
    // 1, so it is in iteration 2, and at its timers skips 2 (late skips never reach back to 1).
    let journal: Vec<Bytes> = h.journal();
    h.restart_from(&journal);
    assert_eq!(h.node.iteration(), 2);
    h.fire();
    h.fire();
    let skips = votes_of(&h.sent_votes(), Phase::Skip);
    assert!(skips.iter().all(|(i, _)| *i == 2), "{skips:?}");
}
