//! Flood tests, written once: one node, a million hostile messages from one member, and what
//! the node retains measured by the caller's allocation counter.
//!
//! A flood test declares a counting global allocator (it must own its test binary, so that
//! the counter sees only it), builds a pool of hostile messages, and calls [`flood`]. The first
//! pass hands the node each message decoded from its wire encoding, as a network would, so
//! that what the node keeps is what it would keep in production; the repeats are clones of the
//! pool. [`Flooded::assert_within`] then checks the two bounds every engine states: what the
//! node retains in all, and how much the repeats added after the first pass (which should be
//! nothing lasting).

use agora_consensus::{Context, Ctx, InMemoryMempool, MempoolLimits, Protocol};
use agora_crypto::domain;
use agora_types::{Batch, NodeId, PublicKeyBytes, SecretKey, Transaction, codec};
use bytes::Bytes;

use crate::MemoCheck;

/// Messages a flood test delivers.
pub const MESSAGES: usize = 1_000_000;

/// Growth allowed from the end of the first pass over the pool (every distinct message seen
/// once) to the end of the flood: repeats must cost nothing lasting.
pub const REPEAT_GROWTH_MAX_BYTES: isize = 1 << 20;

/// A batch of 100 made-up transactions of 1,000 bytes each (about 110 KB), distinct for each
/// `k`: what a hostile member would have a node retain. Engines do not check transaction
/// signatures before execution, so one wrong signature serves them all.
pub fn bulky_batch(k: u64) -> Batch {
    let client = SecretKey::from_seed(99, 1);
    let sender = PublicKeyBytes::from(client.public_key());
    let wrong = client.sign(&domain::TX_SIGNATURE, b"not these");
    let txs = (0..100u64).map(|i| {
        let payload = Bytes::from(vec![(k + i) as u8; 1_000]);
        Transaction::from_parts(sender, k * 1_000 + i, payload, wrong)
            .expect("a made-up transaction is within the limits")
    });
    Batch::new(txs.collect()).expect("a hundred transactions are within the batch limits")
}

/// Bytes live by a counting allocator's tallies since a point: what was allocated, less what
/// was freed, plus what reallocations added.
pub fn live_bytes(allocated: usize, deallocated: usize, reallocated: isize) -> isize {
    allocated as isize - deallocated as isize + reallocated
}

/// What a flood left in the node's memory, by the caller's counter (bytes live).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flooded {
    /// Messages delivered.
    pub messages: usize,
    /// Bytes live after the first pass over the pool (every distinct message seen once).
    pub after_first_pass: isize,
    /// Bytes live at the end.
    pub retained: isize,
}

impl Flooded {
    /// Asserts that the node retained at most `retained_max` bytes, and that the repeats grew
    /// it by at most `repeat_growth_max` after the first pass.
    pub fn assert_within(&self, retained_max: isize, repeat_growth_max: isize) {
        let Self { messages, after_first_pass, retained } = *self;
        assert!(
            retained <= retained_max,
            "retained {} MiB after {messages} hostile messages",
            retained >> 20
        );
        assert!(
            retained - after_first_pass <= repeat_growth_max,
            "repeats grew the state by {} KiB",
            (retained - after_first_pass) >> 10
        );
    }
}

/// Delivers `messages` messages from `from` to `node` (member `me`), cycling through `pool`:
/// `start` runs first, at time 0, then every message at time 1 (so no timer is due). The first
/// pass decodes each message from its encoding; the rest are clones. `live` reads the bytes the
/// process holds (a counting allocator's region); it is read after the first pass and at the
/// end, and the report is printed for the test's log.
pub fn flood<P: Protocol>(
    node: &mut P,
    me: NodeId,
    from: NodeId,
    pool: &[P::Message],
    messages: usize,
    start: impl FnOnce(&mut P, &mut Ctx<'_, P>),
    live: impl Fn() -> isize,
) -> Flooded {
    let mut mempool = InMemoryMempool::new(MempoolLimits::default());
    let mut check = MemoCheck::default();
    let mut actions = Vec::new();
    let wire: Vec<bytes::Bytes> =
        pool.iter().map(|m| codec::encode(m).expect("hostile messages encode")).collect();
    let base = live();
    {
        let mut ctx = Context::new(0, me, &mut actions, &mut mempool, &mut check);
        start(node, &mut ctx);
    }
    let mut after_first_pass = 0;
    for i in 0..messages {
        let message = match wire.get(i) {
            Some(bytes) => codec::decode::<P::Message>(bytes).expect("hostile messages decode"),
            None => pool[i % pool.len()].clone(),
        };
        let mut ctx = Context::new(1, me, &mut actions, &mut mempool, &mut check);
        node.on_message(&mut ctx, from, message);
        actions.clear();
        if i + 1 == pool.len() {
            after_first_pass = live() - base;
        }
    }
    let retained = live() - base;
    eprintln!(
        "retained {} KiB ({} KiB after the first pass)",
        retained >> 10,
        after_first_pass >> 10
    );
    Flooded { messages, after_first_pass, retained }
}
