//! The vote rule, one node driven by hand: "vote for the first proposal of the epoch's leader
//! that extends one of the longest notarized chains; at most one vote per epoch".

use agora_consensus::{Action, Context, InMemoryMempool, MempoolLimits, Protocol};
use agora_crypto::{DirectCheck, domain};
use agora_streamlet::{
    LeaderRule, Proposal, Streamlet, StreamletConfig, StreamletMessage, StreamletTimer,
};
use agora_types::bytes::Bytes;
use agora_types::{
    Batch, Block, Committee, Epoch, Height, NodeId, Phase, Round, SecretKey, Statement, Vote,
};

const DELTA: u64 = 50_000_000;

/// Node 3 of 4 under round robin (epoch e led by node e mod 4), with helpers to feed it.
struct Harness {
    node: Streamlet,
    keys: Vec<SecretKey>,
    mempool: InMemoryMempool,
    actions: Vec<Action<StreamletMessage, StreamletTimer>>,
}

impl Harness {
    fn new() -> Self {
        let (committee, keys) = Committee::deterministic(1, 4).unwrap();
        let mut config = StreamletConfig::new(DELTA);
        config.leader = LeaderRule::RoundRobin;
        let node = Streamlet::new(config, committee, NodeId(3), keys[3].clone())
            .expect("a valid configuration");
        Self {
            node,
            keys,
            mempool: InMemoryMempool::new(MempoolLimits::default()),
            actions: Vec::new(),
        }
    }

    fn enter(&mut self, epoch: u64) {
        let now = 2 * DELTA * (epoch - 1);
        let mut check = DirectCheck;
        let mut ctx =
            Context::new(now, NodeId(3), &mut self.actions, &mut self.mempool, &mut check);
        self.node.on_timer(&mut ctx, StreamletTimer::EpochStart(Epoch(epoch)));
    }

    /// The records node 3 persisted so far, from its latest checkpoint on: what a driver's
    /// journal would hand a restarted engine.
    fn journal(&self) -> Vec<Bytes> {
        agora_consensus::journal_of(&self.actions)
    }

    /// Node 3 crashes and starts again in its current epoch, as a fresh engine restored from
    /// `journal`.
    fn restart_from(&mut self, journal: &[Bytes]) {
        let epoch = self.node.epoch();
        let (committee, _) = Committee::deterministic(1, 4).unwrap();
        let mut config = StreamletConfig::new(DELTA);
        config.leader = LeaderRule::RoundRobin;
        self.node = Streamlet::new(config, committee, NodeId(3), self.keys[3].clone()).unwrap();
        self.node.restore(journal).expect("the engine restores from its own records");
        let now = 2 * DELTA * (epoch.0 - 1) + 1;
        self.actions.clear();
        let mut check = DirectCheck;
        let mut ctx =
            Context::new(now, NodeId(3), &mut self.actions, &mut self.mempool, &mut check);
        self.node.on_start(&mut ctx);
    }

    fn proposal(&self, parent: &Block, epoch: u64, proposer: u16, stamp: u64) -> Proposal {
        let block = Block::new(
            parent.digest(),
            Round(epoch),
            Height(parent.height().0 + 1),
            NodeId(proposer),
            stamp,
            Batch::empty(),
        );
        let signature =
            self.keys[usize::from(proposer)].sign(&domain::PROPOSAL, block.digest().as_bytes());
        Proposal { block, signature }
    }

    fn deliver(&mut self, message: StreamletMessage) {
        let now = self.node.epoch().0.saturating_sub(1) * 2 * DELTA + 1;
        let mut check = DirectCheck;
        let mut ctx =
            Context::new(now, NodeId(3), &mut self.actions, &mut self.mempool, &mut check);
        self.node.on_message(&mut ctx, NodeId(0), message);
    }

    /// Votes from nodes 0, 1 and 2 notarize `block` (⌈2n/3⌉ = 3).
    fn notarize(&mut self, block: &Block) {
        let s = Statement {
            phase: Phase::Vote,
            round: block.round(),
            height: block.height(),
            value: block.digest(),
        };
        for voter in 0..3u16 {
            let vote = Vote::sign(s, NodeId(voter), &self.keys[usize::from(voter)]);
            self.deliver(StreamletMessage::Vote(vote));
        }
    }

    /// The digests node 3 broadcast a vote for since the last call.
    fn votes_cast(&mut self) -> Vec<(u64, agora_crypto::Digest)> {
        let votes = self
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Broadcast { message: StreamletMessage::Vote(v) }
                    if v.voter == NodeId(3) =>
                {
                    Some((v.statement.round.0, v.statement.value))
                }
                _ => None,
            })
            .collect();
        self.actions.clear();
        votes
    }
}

#[test]
fn votes_for_the_leaders_proposal_extending_the_longest_notarized_chain() {
    let mut h = Harness::new();
    h.enter(1);
    let p = h.proposal(&Block::genesis(), 1, 1, 0);
    h.deliver(StreamletMessage::Propose(p.clone()));
    assert_eq!(h.votes_cast(), vec![(1, p.block.digest())]);
}

#[test]
fn the_vote_rule_refuses() {
    type Case = (&'static str, fn(&mut Harness) -> Vec<Proposal>);
    let cases: Vec<Case> = vec![
        ("a proposer that is not the epoch's leader", |h| {
            h.enter(1);
            vec![h.proposal(&Block::genesis(), 1, 2, 0)]
        }),
        ("a proposal of a past epoch", |h| {
            h.enter(2);
            vec![h.proposal(&Block::genesis(), 1, 1, 0)]
        }),
        ("a proposal of a future epoch", |h| {
            h.enter(1);
            vec![h.proposal(&Block::genesis(), 2, 2, 0)]
        }),
        ("a second proposal of the same leader in one epoch", |h| {
            h.enter(1);
            let first = h.proposal(&Block::genesis(), 1, 1, 0);
            h.deliver(StreamletMessage::Propose(first));
            h.actions.clear();
            vec![h.proposal(&Block::genesis(), 1, 1, 1)]
        }),
        ("a proposal that does not extend the longest notarized chain", |h| {
            // b1 is notarized, so the longest notarized chain has length 1; a block on genesis
            // no longer extends it.
            h.enter(1);
            let b1 = h.proposal(&Block::genesis(), 1, 1, 0);
            h.deliver(StreamletMessage::Propose(b1.clone()));
            h.notarize(&b1.block);
            h.enter(2);
            h.actions.clear();
            vec![h.proposal(&Block::genesis(), 2, 2, 0)]
        }),
        ("a proposal whose signature is not the leader's", |h| {
            h.enter(1);
            let mut p = h.proposal(&Block::genesis(), 1, 1, 0);
            p.signature = h.keys[2].sign(&domain::PROPOSAL, p.block.digest().as_bytes());
            vec![p]
        }),
    ];
    for (name, setup) in cases {
        let mut h = Harness::new();
        let proposals = setup(&mut h);
        for p in proposals {
            h.deliver(StreamletMessage::Propose(p));
        }
        assert_eq!(h.votes_cast(), vec![], "{name}: voted");
    }
}

#[test]
fn at_most_one_vote_per_epoch_even_after_a_notarization_changes_the_longest_chain() {
    let mut h = Harness::new();
    h.enter(1);
    let b1 = h.proposal(&Block::genesis(), 1, 1, 0);
    h.deliver(StreamletMessage::Propose(b1.clone()));
    assert_eq!(h.votes_cast().len(), 1);
    h.notarize(&b1.block);
    // Epoch 2's proposal arrives before b1's notarization is known would be refused; here it
    // extends b1, which is notarized: one vote, then no second vote for anything in epoch 2.
    h.enter(2);
    let b2 = h.proposal(&b1.block, 2, 2, 0);
    h.deliver(StreamletMessage::Propose(b2.clone()));
    let other = h.proposal(&b1.block, 2, 2, 1);
    h.deliver(StreamletMessage::Propose(other));
    assert_eq!(h.votes_cast(), vec![(2, b2.block.digest())]);
}

#[test]
fn a_proposal_waiting_for_its_parents_notarization_gets_the_vote_when_it_comes() {
    // Epoch 2's proposal arrives while b1 is not yet notarized here: no vote yet. When b1's
    // notarization arrives within epoch 2, b2 extends the longest notarized chain: vote.
    let mut h = Harness::new();
    h.enter(1);
    let b1 = h.proposal(&Block::genesis(), 1, 1, 0);
    h.deliver(StreamletMessage::Propose(b1.clone()));
    h.enter(2);
    h.actions.clear();
    let b2 = h.proposal(&b1.block, 2, 2, 0);
    h.deliver(StreamletMessage::Propose(b2.clone()));
    assert_eq!(h.votes_cast(), vec![]);
    h.notarize(&b1.block);
    assert_eq!(h.votes_cast(), vec![(2, b2.block.digest())]);
}

#[test]
fn a_notarized_proposal_is_taken_after_a_faulty_leader_spent_the_epochs_quota() {
    // Swarm seed 791007136: the faulty leader of an epoch sent one node two proposals that
    // spent its quota, then the others notarized a third. Refused as "too many proposals",
    // it never reached that node's tree, every later block waited for it as a parent, and
    // with that node needed in every quorum nothing was final again.
    let mut h = Harness::new();
    h.enter(1);
    for stamp in 0..2 {
        h.deliver(StreamletMessage::Propose(h.proposal(&Block::genesis(), 1, 1, stamp)));
    }
    let notarized = h.proposal(&Block::genesis(), 1, 1, 2);
    h.deliver(StreamletMessage::Propose(notarized.clone()));
    assert_eq!(h.node.notarized_height(), Height(0), "the quota holds for a block not notarized");
    h.notarize(&notarized.block);
    h.deliver(StreamletMessage::EchoPropose(notarized.clone()));
    assert_eq!(h.node.notarized_height(), Height(1), "the notarized block joins the tree");
    h.enter(2);
    h.actions.clear();
    let b2 = h.proposal(&notarized.block, 2, 2, 0);
    h.deliver(StreamletMessage::Propose(b2.clone()));
    assert_eq!(h.votes_cast(), vec![(2, b2.block.digest())], "and the chain goes on from it");
}

#[test]
fn a_vote_is_persisted_before_it_is_broadcast() {
    let mut h = Harness::new();
    h.enter(1);
    h.actions.clear();
    h.deliver(StreamletMessage::Propose(h.proposal(&Block::genesis(), 1, 1, 0)));
    let position = |wanted: fn(&Action<StreamletMessage, StreamletTimer>) -> bool| {
        h.actions.iter().position(wanted).expect("the action is there")
    };
    let persisted = position(|a| matches!(a, Action::Persist { .. }));
    let sent = position(|a| matches!(a, Action::Broadcast { message: StreamletMessage::Vote(_) }));
    assert!(persisted < sent, "the vote left before its record");
}

#[test]
fn a_restarted_node_never_votes_twice_in_an_epoch_and_an_amnesiac_one_does() {
    // The leader of epoch 1 equivocates: node 3 votes for the first proposal, crashes, and
    // after a restart in the same epoch receives the second.
    for (journal_kept, votes_again) in [(true, false), (false, true)] {
        let mut h = Harness::new();
        h.enter(1);
        let first = h.proposal(&Block::genesis(), 1, 1, 0);
        h.deliver(StreamletMessage::Propose(first.clone()));
        let journal = if journal_kept { h.journal() } else { Vec::new() };
        assert_eq!(h.votes_cast(), vec![(1, first.block.digest())]);
        h.restart_from(&journal);
        let second = h.proposal(&Block::genesis(), 1, 1, 1);
        h.deliver(StreamletMessage::Propose(second.clone()));
        let again = h.votes_cast();
        assert_eq!(!again.is_empty(), votes_again, "journal kept: {journal_kept}: {again:?}");
    }
}

#[test]
fn a_restarted_node_keeps_its_notarized_chain() {
    let mut h = Harness::new();
    h.enter(1);
    let b1 = h.proposal(&Block::genesis(), 1, 1, 0);
    h.deliver(StreamletMessage::Propose(b1.clone()));
    h.notarize(&b1.block);
    let journal = h.journal();
    h.enter(2);
    h.restart_from(&journal);
    assert_eq!(h.node.notarized_height(), Height(1), "b1 is still notarized");
    // Epoch 2's proposal on b1 extends the longest notarized chain: the restarted node votes.
    let b2 = h.proposal(&b1.block, 2, 2, 0);
    h.deliver(StreamletMessage::Propose(b2.clone()));
    assert_eq!(h.votes_cast(), vec![(2, b2.block.digest())]);
}

#[test]
fn blocks_final_in_the_journal_are_committed_again_on_restart_with_their_notarizations() {
    let mut h = Harness::new();
    let mut parent = Block::genesis();
    let mut chain = Vec::new();
    // Three consecutive epochs notarized (leaders 0, 1, 2): the first two are final.
    for epoch in 4..=6 {
        h.enter(epoch);
        let proposal = h.proposal(&parent, epoch, (epoch % 4) as u16, 0);
        h.deliver(StreamletMessage::Propose(proposal.clone()));
        h.notarize(&proposal.block);
        parent = proposal.block.clone();
        chain.push(proposal.block);
    }
    let committed: Vec<Height> = h
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Commit { block, .. } => Some(block.height()),
            _ => None,
        })
        .collect();
    assert_eq!(committed, vec![Height(1), Height(2)]);
    // The crash came before the finalization's checkpoint record was durable (and the block
    // store lost the blocks): the notarizations in the journal make them final again, and the
    // restarted engine commits each with its notarization, as the first time.
    let mut persisted: Vec<(Bytes, Option<u64>)> = h
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Persist { record, checkpoint } => Some((record.clone(), *checkpoint)),
            _ => None,
        })
        .collect();
    let (_, last) = persisted.pop().expect("records");
    assert!(last.is_some(), "finality's last record is its checkpoint");
    let journal: Vec<Bytes> = persisted.into_iter().map(|(record, _)| record).collect();
    h.restart_from(&journal);
    let recommitted: Vec<_> = h
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Commit { block, proof } => Some((block.clone(), proof.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(recommitted.len(), 2);
    for ((block, proof), expected) in recommitted.iter().zip(&chain) {
        assert_eq!(block, expected);
        assert_eq!(proof.len(), 1, "height {}", block.height());
        assert_eq!(proof[0].statement().value, block.digest());
        assert!(proof[0].signers().len() >= 3);
    }
}
