//! Hostile input for every decoder: random bytes, truncations and bit flips of valid encodings
//! give errors or canonical values, never panics.

use agora_types::{
    Batch, Block, BlockHeader, Certificate, Committee, Height, NodeId, Phase, Round, Statement,
    Transaction, Vote, codec,
};
use bytes::Bytes;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn block(seed: u64, txs: usize, payload_len: usize) -> Block {
    let (_, secrets) = Committee::deterministic(seed, 4).unwrap();
    let txs = (0..txs)
        .map(|i| {
            let payload = Bytes::from(vec![i as u8; payload_len]);
            Transaction::new_signed(&secrets[i % 4], i as u64, payload).unwrap()
        })
        .collect();
    Block::new(
        Block::genesis().digest(),
        Round(seed % 9),
        Height(seed % 5),
        NodeId(1),
        seed,
        Batch::new(txs).unwrap(),
    )
}

fn certificate(seed: u64) -> Certificate {
    let (_, secrets) = Committee::deterministic(seed, 4).unwrap();
    let s = Statement {
        phase: Phase::Prepare,
        round: Round(seed),
        height: Height(2),
        value: block(seed, 1, 3).digest(),
    };
    Certificate::new(
        s,
        (0..3u16)
            .map(|i| (NodeId(i), Vote::sign(s, NodeId(i), &secrets[usize::from(i)]).signature)),
    )
}

/// Decoding never panics; whatever decodes is canonical (re-encodes to the same bytes).
fn check<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(value) = codec::decode::<T>(bytes) {
        prop_assert_eq!(&codec::encode(&value).unwrap()[..], bytes);
    }
    Ok(())
}

fn check_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    check::<Transaction>(bytes)?;
    check::<Batch>(bytes)?;
    check::<Block>(bytes)?;
    check::<BlockHeader>(bytes)?;
    check::<Vote>(bytes)?;
    check::<Statement>(bytes)?;
    check::<Certificate>(bytes)?;
    let _ = Batch::from_encoded(Bytes::copy_from_slice(bytes));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_all(&bytes)?;
    }

    #[test]
    fn truncated_and_flipped_blocks(seed in 0u64..50, txs in 0usize..4, payload in 0usize..40, cut: prop::sample::Index, bit: prop::sample::Index) {
        let bytes = codec::encode(&block(seed, txs, payload)).unwrap();
        let cut = cut.index(bytes.len());
        prop_assert!(codec::decode::<Block>(&bytes[..cut]).is_err(), "a strict prefix decoded");
        check_all(&bytes[..cut])?;
        let mut flipped = bytes.to_vec();
        let bit = bit.index(flipped.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        check_all(&flipped)?;
        // A flip that still decodes must have changed the block's identity (or its payload).
        if let Ok(b) = codec::decode::<Block>(&flipped) {
            let original: Block = codec::decode(&bytes).unwrap();
            prop_assert!(b.digest() != original.digest() || b.batch().encoded() != original.batch().encoded());
        }
    }

    #[test]
    fn truncated_and_flipped_certificates(seed in 0u64..50, cut: prop::sample::Index, bit: prop::sample::Index) {
        let bytes = codec::encode(&certificate(seed)).unwrap();
        let cut = cut.index(bytes.len());
        check_all(&bytes[..cut])?;
        let mut flipped = bytes.to_vec();
        let bit = bit.index(flipped.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        check_all(&flipped)?;
    }

    #[test]
    fn flipped_certificates_fail_verification(seed in 0u64..20, bit: prop::sample::Index) {
        let (committee, _) = Committee::deterministic(seed, 4).unwrap();
        let cert = certificate(seed);
        prop_assert!(cert.verify(&committee, committee.byzantine_quorum()).is_ok());
        let bytes = codec::encode(&cert).unwrap();
        let mut flipped = bytes.to_vec();
        let bit = bit.index(flipped.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        if let Ok(c) = codec::decode::<Certificate>(&flipped) {
            prop_assert!(c.verify(&committee, committee.byzantine_quorum()).is_err());
        }
    }
}

#[test]
fn claimed_lengths_are_not_trusted() {
    // A certificate claiming a million signatures, a batch claiming ten thousand transactions:
    // both are short inputs and must fail fast.
    let mut cert = codec::encode(&certificate(1)).unwrap().to_vec();
    let statement_len = codec::encoded_len(certificate(1).statement());
    cert.truncate(statement_len);
    cert.extend_from_slice(&[0xc0, 0x84, 0x3d]); // varint 1,000,000
    assert!(codec::decode::<Certificate>(&cert).is_err());
    let batch = codec::encode(&10_000u64).unwrap();
    assert!(Batch::from_encoded(batch).is_err());
}
