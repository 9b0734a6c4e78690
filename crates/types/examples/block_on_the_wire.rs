//! The values consensus agrees on, built, encoded, decoded and certified: signed transactions
//! in a batch, a block over it, and a committee's votes making a certificate.
//!
//! `cargo run -p agora-types --example block_on_the_wire`

use agora_types::bytes::Bytes;
use agora_types::{
    Batch, Block, Certificate, Committee, Height, NodeId, Phase, Round, Statement, Transaction,
    Vote, codec,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (committee, keys) = Committee::deterministic(7, 4)?;
    let txs = (0..3)
        .map(|nonce| Transaction::new_signed(&keys[0], nonce, Bytes::from(vec![nonce as u8; 16])))
        .collect::<Result<Vec<_>, _>>()?;
    let batch = Batch::new(txs)?;
    let block = Block::new(Block::genesis().digest(), Round(1), Height(1), NodeId(1), 0, batch);

    // The wire form decodes to the same block, strictly: a truncated copy is an error.
    let bytes = codec::encode(&block)?;
    let decoded: Block = codec::decode(&bytes)?;
    assert_eq!(decoded.digest(), block.digest());
    assert!(codec::decode::<Block>(&bytes[..bytes.len() - 1]).is_err());
    for tx in decoded.batch().transactions() {
        tx.verify()?;
    }
    println!(
        "block {} at height {}: {} bytes, {} transactions",
        block.digest(),
        block.height(),
        bytes.len(),
        block.batch().len()
    );

    // A quorum of votes for the block is a certificate anyone with the committee can check.
    let statement = Statement {
        phase: Phase::Vote,
        round: block.round(),
        height: block.height(),
        value: block.digest(),
    };
    let quorum = committee.notarization_quorum();
    let votes: Vec<Vote> = committee
        .members()
        .take(quorum)
        .map(|m| Vote::sign(statement, m, &keys[m.index()]))
        .collect();
    for vote in &votes {
        vote.verify(&committee)?;
    }
    let certificate = Certificate::new(statement, votes.iter().map(|v| (v.voter, v.signature)));
    certificate.verify(&committee, quorum)?;
    assert!(certificate.verify(&committee, quorum + 1).is_err());
    println!("certified by {} of {} members", certificate.signers().len(), committee.n());
    Ok(())
}
