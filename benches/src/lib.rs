//! Shared fixtures for agora's criterion benchmarks (the benchmarks themselves are in
//! `benches/benches/`).

use agora_consensus::{Ctx, Message, Protocol};
use agora_crypto::SecretKey;
use agora_crypto::{
    DirectCheck, Domain, PublicKey, PublicKeyBytes, Signature, SignatureCheck, SignatureError,
};
use agora_types::{Batch, Block, Height, NodeId, Round, Transaction};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use serde::{Deserialize, Serialize};

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

/// An engine that does nothing but broadcast a 9-byte message every `every_ns`: it measures the
/// simulator's own cost per delivery, with the engine's work as close to zero as it gets.
#[derive(Debug, Clone, Copy)]
pub struct Flood {
    /// Broadcast period.
    pub every_ns: u64,
}

/// [`Flood`]'s message.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Splash(pub u64);

impl Message for Splash {
    fn kind(&self) -> &'static str {
        "splash"
    }
}

impl Protocol for Flood {
    type Message = Splash;
    type Timer = ();

    fn on_start(&mut self, ctx: &mut Ctx<'_, Self>) {
        ctx.set_timer((), self.every_ns);
    }

    fn on_message(&mut self, _: &mut Ctx<'_, Self>, _: NodeId, _: Splash) {}

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, _: ()) {
        ctx.broadcast(Splash(ctx.now_ns()));
        ctx.set_timer((), self.every_ns);
    }
}

/// Accepts every signature: isolates an engine's own cost from k256's in benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustAll;

impl SignatureCheck for TrustAll {
    fn check(
        &mut self,
        _: &PublicKey,
        _: &Domain,
        _: &[u8],
        _: &Signature,
    ) -> Result<(), SignatureError> {
        Ok(())
    }

    fn check_bytes(
        &mut self,
        _: &PublicKeyBytes,
        _: &Domain,
        _: &[u8],
        _: &Signature,
    ) -> Result<(), SignatureError> {
        Ok(())
    }
}

/// Benchmarks an engine's vote handling: for each `(n, inputs, votes)`, `replay` runs the recorded
/// inputs through a fresh node, once with k256 verification ("verified") and once with
/// signatures unchecked ("engine"); throughput is in votes.
pub fn bench_votes<I>(
    c: &mut Criterion,
    group: &str,
    runs: &[(usize, I, u64)],
    replay: impl Fn(&I, &mut dyn SignatureCheck) -> u64,
) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    for (n, inputs, votes) in runs {
        g.throughput(Throughput::Elements(*votes));
        g.bench_with_input(BenchmarkId::new("verified", n), inputs, |b, inputs| {
            b.iter(|| std::hint::black_box(replay(inputs, &mut DirectCheck)))
        });
        g.bench_with_input(BenchmarkId::new("engine", n), inputs, |b, inputs| {
            b.iter(|| std::hint::black_box(replay(inputs, &mut TrustAll)))
        });
    }
    g.finish();
}
