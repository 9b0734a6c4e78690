//! Shared fixtures for agora's criterion benchmarks (the benchmarks themselves are in
//! `benches/benches/`).

use agora_crypto::SecretKey;
use agora_types::{Batch, Block, Height, NodeId, Round, Transaction};
use bytes::Bytes;

/// A block of `txs` signed order-sized transactions (about 40-byte payloads) from 100 clients,
/// the shape a market's block has.
pub fn order_block(txs: usize) -> Block {
    let clients: Vec<SecretKey> = (0..100).map(|i| SecretKey::from_seed(99, i)).collect();
    let txs = (0..txs)
        .map(|i| {
            let payload =
                Bytes::from(format!("place buy ETH-USD limit {} x {}", 2_000 + i % 50, 1 + i % 9));
            Transaction::new_signed(&clients[i % clients.len()], i as u64, payload)
                .expect("order payloads are far below the limit")
        })
        .collect();
    let batch = Batch::new(txs).expect("the fixture stays within batch limits");
    Block::new(Block::genesis().digest(), Round(1), Height(1), NodeId(0), 0, batch)
}
