//! PBFT's message handling: votes (prepares and commits) per second through one backup at n = 4
//! and n = 64, beside Streamlet's. A recording pass drives replica 1 through K sequence numbers
//! (the primary's pre-prepare, every other replica's prepare and commit) and keeps the inputs;
//! the timed pass replays them into a fresh replica, with k256 verification ("verified") and
//! with signatures accepted unchecked ("engine").

use agora_benches::bench_votes;
use agora_consensus::{Context, InMemoryMempool, MempoolLimits, Protocol};
use agora_crypto::{DirectCheck, SignatureCheck};
use agora_pbft::{Pbft, PbftConfig, PbftMessage, PrePrepare, statement};
use agora_types::{
    Batch, Block, Committee, Digest, Height, NodeId, Phase, Round, SecretKey, SeqNo, View, Vote,
};
use criterion::{Criterion, criterion_group, criterion_main};

const ME: NodeId = NodeId(1);

fn config() -> PbftConfig {
    PbftConfig::new(1_000_000_000)
}

/// Inputs to replica 1 for `seqs` sequence numbers in view 0.
fn record(n: usize, seqs: u64) -> (Committee, Vec<SecretKey>, Vec<(NodeId, PbftMessage)>) {
    let (committee, keys) = Committee::deterministic(9, n).unwrap();
    let mut inputs = Vec::new();
    let mut parent = Digest::ZERO;
    for seq in 1..=seqs {
        let block = Block::new(parent, Round(0), Height(seq), NodeId(0), seq, Batch::empty());
        parent = block.digest();
        let d = block.digest();
        let vote =
            Vote::sign(statement(Phase::PrePrepare, View(0), SeqNo(seq), d), NodeId(0), &keys[0]);
        inputs.push((NodeId(0), PbftMessage::PrePrepare(PrePrepare { vote, block })));
        for phase in [Phase::Prepare, Phase::Commit] {
            let s = statement(phase, View(0), SeqNo(seq), d);
            // The primary sends no prepare; everyone but replica 1 itself sends the rest.
            for voter in (0..n as u16)
                .map(NodeId)
                .filter(|v| *v != ME && !(phase == Phase::Prepare && v.0 == 0))
            {
                let vote = Vote::sign(s, voter, &keys[voter.index()]);
                inputs.push((
                    voter,
                    if phase == Phase::Prepare {
                        PbftMessage::Prepare(vote)
                    } else {
                        PbftMessage::Commit(vote)
                    },
                ));
            }
        }
    }
    (committee, keys, inputs)
}

fn replay(
    committee: &Committee,
    keys: &[SecretKey],
    inputs: &[(NodeId, PbftMessage)],
    checker: &mut dyn SignatureCheck,
) -> SeqNo {
    let mut replica = Pbft::new(config(), committee.clone(), ME, keys[ME.index()].clone())
        .expect("a valid configuration");
    let mut mempool = InMemoryMempool::new(MempoolLimits::default());
    let mut actions = Vec::new();
    for (i, (from, message)) in inputs.iter().enumerate() {
        let mut ctx = Context::new(i as u64, ME, &mut actions, &mut mempool, checker);
        replica.on_message(&mut ctx, *from, message.clone());
        actions.clear();
    }
    replica.last_executed()
}

fn votes(c: &mut Criterion) {
    let runs: Vec<_> = [(4usize, 48u64), (64, 16)]
        .into_iter()
        .map(|(n, seqs)| {
            let (committee, keys, inputs) = record(n, seqs);
            // Every recorded sequence number executes (the window holds them all).
            assert_eq!(replay(&committee, &keys, &inputs, &mut DirectCheck), SeqNo(seqs));
            let votes = inputs
                .iter()
                .filter(|(_, m)| matches!(m, PbftMessage::Prepare(_) | PbftMessage::Commit(_)))
                .count() as u64;
            (n, (committee, keys, inputs), votes)
        })
        .collect();
    bench_votes(c, "pbft_votes", &runs, |(committee, keys, inputs), checker| {
        replay(committee, keys, inputs, checker).0
    });
}

criterion_group!(benches, votes);
criterion_main!(benches);
