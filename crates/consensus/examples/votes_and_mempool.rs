//! Two pieces every engine shares: the vote keeper, which counts each member once, recognises
//! echoes before any signature is checked, emits a certificate exactly once and keeps evidence
//! of equivocation; and the mempool, which refuses duplicates and fills batches within limits.
//!
//! `cargo run -p agora-consensus --example votes_and_mempool`

use agora_consensus::{
    BatchLimits, InMemoryMempool, Mempool, MempoolLimits, RecentIds, Submitted, VoteKeeper,
    VoteOutcome,
};
use agora_crypto::{Digest, DirectCheck, SecretKey, domain};
use agora_types::bytes::Bytes;
use agora_types::{Committee, Height, NodeId, Phase, Round, Statement, Transaction, Vote};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (committee, keys) = Committee::deterministic(3, 4)?;
    let statement = |value: &[u8]| Statement {
        phase: Phase::Vote,
        round: Round(1),
        height: Height(1),
        value: domain::BLOCK.hash(value),
    };
    let (a, b) = (statement(b"block a"), statement(b"block b"));
    let mut keeper = VoteKeeper::new(committee.notarization_quorum(), 1_024);
    let mut checker = DirectCheck;
    for member in committee.members() {
        let vote = Vote::sign(a, member, &keys[member.index()]);
        match keeper.add(&vote, &committee, &mut checker)? {
            VoteOutcome::Certified(certificate) => {
                println!("{member}: certified by {} signers", certificate.signers().len())
            }
            outcome => println!("{member}: {outcome:?}"),
        }
        // The same vote again (an echo) is recognised before its signature is checked.
        assert_eq!(keeper.add(&vote, &committee, &mut checker)?, VoteOutcome::Duplicate);
    }
    // Member 0 votes for a second value in the same slot: kept as evidence, counted apart.
    keeper.add(&Vote::sign(b, NodeId(0), &keys[0]), &committee, &mut checker)?;
    assert_eq!(keeper.equivocations(), 1);
    println!("equivocation evidence: {} pair(s)", keeper.evidence().len());

    // The mempool refuses a transaction it holds or committed recently, and fills a batch
    // within its limits.
    let client = SecretKey::from_seed(9, 0);
    let mut mempool = InMemoryMempool::new(MempoolLimits::default());
    let txs: Vec<Transaction> = (0..5)
        .map(|n| Transaction::new_signed(&client, n, Bytes::from_static(b"order")))
        .collect::<Result<_, _>>()?;
    for tx in &txs {
        assert_eq!(mempool.insert(tx.clone())?, Submitted::Accepted);
    }
    assert_eq!(mempool.insert(txs[0].clone())?, Submitted::Duplicate);
    let limits = BatchLimits { txs_max: 3, bytes_max: 1 << 20 };
    let batch = mempool.select(&limits, &|_: &Digest| false);
    println!("a batch of {} from {} pending", batch.len(), mempool.len());
    mempool.remove_committed(&batch);
    assert_eq!(mempool.insert(txs[0].clone())?, Submitted::Duplicate);

    // The bounded memory of recent ids the mempool and the engines use.
    let mut recent = RecentIds::new(2);
    for tx in &txs {
        recent.insert(tx.id());
    }
    assert!(!recent.contains(&txs[0].id()) && recent.contains(&txs[4].id()));
    println!("remembered {} recent ids", recent.len());
    Ok(())
}
