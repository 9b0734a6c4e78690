//! Decoding never allocates much more than its input justifies: at most a small multiple of the
//! input's length, whatever lengths the input claims. One test in this binary, so the global
//! allocation counter sees only it.

use std::alloc::System;

use agora_crypto::Digest;
use agora_types::{
    Batch, Block, BlockHeader, Certificate, Height, NodeId, Phase, Round, Statement, Transaction,
    Vote, codec,
};
use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allowed bytes allocated per input byte, plus a constant for error messages.
const FACTOR: usize = 8;
const SLACK_BYTES: usize = 2048;

fn allocated_while(f: impl FnOnce()) -> usize {
    let region = Region::new(GLOBAL);
    f();
    region.change().bytes_allocated
}

#[test]
fn decoding_allocation_is_bounded_by_input() {
    // Adversarial shapes: a valid prefix that brings the decoder to a length it must read (a
    // certificate's signature list, a block's batch), a claimed length, then random bytes.
    let statement =
        Statement { phase: Phase::Vote, round: Round(1), height: Height(1), value: Digest::ZERO };
    let header = *Block::genesis().header();
    let prefixes: Vec<Vec<u8>> = vec![
        Vec::new(),
        codec::encode(&statement).unwrap().to_vec(),
        codec::encode(&BlockHeader { proposer: NodeId(1), ..header }).unwrap().to_vec(),
    ];
    let input = (
        prop::sample::select(prefixes),
        any::<u64>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..2000),
    )
        .prop_map(|(prefix, claim, small, tail)| {
            // Half the claims fit the tail's length, which a decoder could be tempted to reserve.
            let claim = if small { claim % (tail.len() as u64 + 1) } else { claim };
            let mut bytes = prefix;
            bytes.extend_from_slice(&codec::encode(&claim).unwrap());
            bytes.extend_from_slice(&tail);
            bytes
        });
    let mut runner = TestRunner::new(Config { cases: 2000, ..Config::default() });
    runner
        .run(&input, |bytes| {
            let owned = Bytes::copy_from_slice(&bytes);
            let used = allocated_while(|| {
                let _ = codec::decode::<Transaction>(&bytes);
                let _ = codec::decode::<Batch>(&bytes);
                let _ = codec::decode::<Block>(&bytes);
                let _ = codec::decode::<Vote>(&bytes);
                let _ = codec::decode::<Certificate>(&bytes);
                let _ = Batch::from_encoded(owned.clone());
            });
            // Six decoders ran; each may use the budget.
            let budget = 6 * (FACTOR * bytes.len() + SLACK_BYTES);
            prop_assert!(
                used <= budget,
                "{} input bytes allocated {} bytes (budget {})",
                bytes.len(),
                used,
                budget
            );
            Ok(())
        })
        .unwrap();
}
