//! The simulator's own speed: message deliveries per second with n = 64 nodes broadcasting small
//! messages, the engine doing nothing (target: 2 million per second on one core).

use std::hint::black_box;

use agora_benches::Flood;
use agora_consensus::TxLog;
use agora_netsim::{Jitter, SimConfig, Simulation, TraceMode};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MS: u64 = 1_000_000;

fn config(trace: TraceMode) -> SimConfig {
    let mut c = SimConfig::new(64);
    c.seed = 1;
    // 20 simulated ms: 20 broadcasts per node, 64 · 63 · 20 = 80,640 deliveries.
    c.duration_ns = 20 * MS + MS / 2;
    c.network.latency_ns = 5 * MS;
    c.network.jitter = Jitter::Uniform { max_ns: MS };
    c.trace = trace;
    c
}

fn run(trace: TraceMode) -> u64 {
    let mut sim = Simulation::new(
        config(trace),
        |_, _, _| Flood { every_ns: MS },
        |_| Box::new(TxLog::new(false)),
    )
    .expect("valid configuration");
    sim.run().deliveries
}

fn deliveries(c: &mut Criterion) {
    let per_run = run(TraceMode::Off);
    let mut g = c.benchmark_group("netsim_n64_broadcast");
    g.throughput(Throughput::Elements(per_run));
    g.sample_size(20);
    g.bench_function("deliveries_trace_off", |b| b.iter(|| black_box(run(TraceMode::Off))));
    g.bench_function("deliveries_trace_digest", |b| b.iter(|| black_box(run(TraceMode::Digest))));
    g.finish();
}

criterion_group!(benches, deliveries);
criterion_main!(benches);
