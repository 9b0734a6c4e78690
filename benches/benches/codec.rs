//! Block digest and the wire codec on a 1,000-transaction block.

use std::hint::black_box;

use agora_benches::order_block;
use agora_types::{Batch, Block, codec};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn block_1000(c: &mut Criterion) {
    let block = order_block(1_000);
    let bytes = codec::encode(&block).expect("the fixture encodes");
    let txs = block.batch().transactions().to_vec();

    let mut g = c.benchmark_group("block_1000tx");
    g.throughput(Throughput::Elements(1));
    g.bench_function("header_digest", |b| b.iter(|| black_box(block.header()).digest()));
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("batch_build_and_digest", |b| b.iter(|| Batch::new(black_box(txs.clone()))));
    g.bench_function("encode", |b| b.iter(|| codec::encode(black_box(&block))));
    g.bench_function("decode", |b| b.iter(|| codec::decode::<Block>(black_box(&bytes))));
    g.finish();
}

criterion_group!(benches, block_1000);
criterion_main!(benches);
