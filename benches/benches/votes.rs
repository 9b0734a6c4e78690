//! The shared vote keeper: votes counted per second, signatures already verified (its own
//! bookkeeping: duplicates, equivocation slots, tallies, certificates) and with k256 verification.

use std::hint::black_box;

use agora_benches::TrustAll;
use agora_consensus::VoteKeeper;
use agora_crypto::{DirectCheck, SignatureCheck, domain};
use agora_types::{Committee, Height, NodeId, Phase, Round, Statement, Vote};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Votes of every member of an `n`-committee for `rounds` rounds.
fn votes(n: usize, rounds: u64) -> (Committee, Vec<Vote>) {
    let (committee, keys) = Committee::deterministic(2, n).unwrap();
    let votes = (1..=rounds)
        .flat_map(|r| {
            let s = Statement {
                phase: Phase::Vote,
                round: Round(r),
                height: Height(r),
                value: domain::BLOCK.hash(&r.to_le_bytes()),
            };
            keys.iter()
                .enumerate()
                .map(move |(i, k)| Vote::sign(s, NodeId(i as u16), k))
                .collect::<Vec<_>>()
        })
        .collect();
    (committee, votes)
}

fn count(committee: &Committee, votes: &[Vote], checker: &mut dyn SignatureCheck) -> usize {
    let mut keeper = VoteKeeper::new(committee.notarization_quorum(), 1 << 20);
    votes.iter().filter(|v| keeper.add(v, committee, checker).is_ok()).count()
}

fn keeper(c: &mut Criterion) {
    let mut g = c.benchmark_group("vote_keeper");
    g.sample_size(10);
    for (n, rounds) in [(4usize, 500u64), (64, 40)] {
        let (committee, votes) = votes(n, rounds);
        g.throughput(Throughput::Elements(votes.len() as u64));
        g.bench_with_input(BenchmarkId::new("bookkeeping", n), &votes, |b, v| {
            b.iter(|| black_box(count(&committee, v, &mut TrustAll)))
        });
        g.bench_with_input(BenchmarkId::new("verified", n), &votes, |b, v| {
            b.iter(|| black_box(count(&committee, v, &mut DirectCheck)))
        });
    }
    g.finish();
}

criterion_group!(benches, keeper);
criterion_main!(benches);
