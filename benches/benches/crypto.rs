//! Signing, verification and hashing: the unit costs every replica pays per transaction.

use std::hint::black_box;

use agora_crypto::{SecretKey, domain};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn signatures(c: &mut Criterion) {
    let key = SecretKey::from_seed(1, 0);
    let message = [7u8; 32];
    let signature = key.sign(&domain::TX_SIGNATURE, &message);
    let public = *key.public_key();
    let public_bytes = agora_crypto::PublicKeyBytes::from(public);

    let mut g = c.benchmark_group("crypto");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign", |b| b.iter(|| key.sign(&domain::TX_SIGNATURE, black_box(&message))));
    g.bench_function("verify", |b| {
        b.iter(|| public.verify(&domain::TX_SIGNATURE, black_box(&message), black_box(&signature)))
    });
    g.bench_function("verify_from_bytes", |b| {
        b.iter(|| {
            public_bytes.verify(&domain::TX_SIGNATURE, black_box(&message), black_box(&signature))
        })
    });
    g.bench_function("parse_public_key", |b| b.iter(|| black_box(&public_bytes).parse()));
    g.finish();
}

fn hashing(c: &mut Criterion) {
    let mut g = c.benchmark_group("hash");
    for size in [64usize, 1024, 64 * 1024] {
        let bytes = vec![3u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("blake3_domain_{size}B"), |b| {
            b.iter(|| domain::BLOCK.hash(black_box(&bytes)))
        });
    }
    g.finish();
}

criterion_group!(benches, signatures, hashing);
criterion_main!(benches);
