//! The simulator's models, checked against arithmetic: latency, bandwidth, partitions, crashes,
//! GST, duplication, the processing model, garbage bytes, and determinism.

use agora_consensus::{Ctx, Message, Protocol, TxLog};
use agora_netsim::{
    BeforeGst, DropReason, Fault, FaultKind, Garbler, Gst, Jitter, Partition, ProcessingConfig,
    SimConfig, Simulation, TraceEvent, TraceMode,
};
use agora_types::NodeId;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

const MS: u64 = 1_000_000;

/// A probe engine: the senders send a ping of `payload_bytes` to `to` (or to everyone) every
/// `every_ns`, up to `count` times. Receivers do nothing.
#[derive(Debug, Clone)]
struct Pinger {
    senders: Vec<NodeId>,
    to: Option<NodeId>,
    every_ns: u64,
    count: u32,
    payload_bytes: usize,
    sent: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ping {
    seq: u32,
    payload: Bytes,
}

impl Message for Ping {
    fn kind(&self) -> &'static str {
        "ping"
    }
}

impl Protocol for Pinger {
    type Message = Ping;
    type Timer = ();

    fn on_start(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.senders.contains(&ctx.me()) && self.sent < self.count {
            ctx.set_timer((), self.every_ns);
        }
    }

    fn on_message(&mut self, _: &mut Ctx<'_, Self>, _: NodeId, _: Ping) {}

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, _: ()) {
        let ping = Ping { seq: self.sent, payload: Bytes::from(vec![0xab; self.payload_bytes]) };
        match self.to {
            Some(to) => ctx.send(to, ping),
            None => ctx.broadcast(ping),
        }
        self.sent += 1;
        if self.sent < self.count {
            ctx.set_timer((), self.every_ns);
        }
    }
}

fn pinger(
    senders: &[u16],
    to: Option<u16>,
    every_ns: u64,
    count: u32,
    payload_bytes: usize,
) -> Pinger {
    Pinger {
        senders: senders.iter().copied().map(NodeId).collect(),
        to: to.map(NodeId),
        every_ns,
        count,
        payload_bytes,
        sent: 0,
    }
}

fn simulate(config: SimConfig, engine: Pinger) -> Simulation<Pinger> {
    Simulation::new(config, |_, _, _| engine.clone(), |_| Box::new(TxLog::new(false))).unwrap()
}

fn recording(nodes: usize) -> SimConfig {
    let mut c = SimConfig::new(nodes);
    c.trace = TraceMode::Record;
    c
}

fn deliveries(sim: &Simulation<Pinger>) -> Vec<(u64, u16, u16)> {
    sim.trace()
        .events()
        .iter()
        .filter_map(|e| match e {
            TraceEvent::Deliver { t_ns, from, to, .. } => Some((*t_ns, from.0, to.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn latency_plus_transmission_time_is_exact() {
    // One message of B bytes over latency L and bandwidth W arrives at L + 8B/W after it is sent.
    for (payload, latency_ms, bps) in
        [(1_000usize, 10u64, 8_000_000u64), (100_000, 3, 100_000_000), (0, 1, 1_000)]
    {
        let mut config = recording(2);
        config.network.latency_ns = latency_ms * MS;
        config.network.bandwidth_bps = Some(bps);
        let mut sim = simulate(config, pinger(&[0], Some(1), MS, 1, payload));
        sim.run();
        let size = Ping { seq: 0, payload: Bytes::from(vec![0xab; payload]) }.encoded_len() as u64;
        let transmission = (size * 8 * 1_000_000_000).div_ceil(bps);
        assert_eq!(
            deliveries(&sim),
            vec![(MS + latency_ms * MS + transmission, 0, 1)],
            "payload {payload}"
        );
    }
}

#[test]
fn an_uplink_sends_one_message_after_another() {
    // A broadcast to 3 peers of a 1,000-byte message over 8 Mbit/s: each copy takes ~1 ms of
    // uplink, so the copies arrive 1 transmission time apart.
    let mut config = recording(4);
    config.network.latency_ns = 5 * MS;
    config.network.bandwidth_bps = Some(8_000_000);
    let mut sim = simulate(config, pinger(&[0], None, MS, 1, 1_000));
    sim.run();
    let tx_ns = (Ping { seq: 0, payload: Bytes::from(vec![0xab; 1_000]) }.encoded_len() as u64
        * 8
        * 1_000_000_000)
        .div_ceil(8_000_000);
    let times: Vec<u64> = deliveries(&sim).iter().map(|d| d.0).collect();
    assert_eq!(times, vec![MS + 5 * MS + tx_ns, MS + 5 * MS + 2 * tx_ns, MS + 5 * MS + 3 * tx_ns]);
}

#[test]
fn partitions_drop_exactly_the_crossing_messages_and_heal_on_time() {
    let mut config = recording(4);
    config.duration_ns = 600 * MS;
    config.network.partitions = vec![Partition {
        start_ns: 100 * MS,
        end_ns: 300 * MS,
        groups: vec![vec![NodeId(0), NodeId(1)]],
    }];
    // Everyone pings everyone every 10 ms, 50 times.
    let mut sim = simulate(config, pinger(&[0, 1, 2, 3], None, 10 * MS, 50, 8));
    sim.run();
    let side = |n: u16| n < 2;
    let mut crossing_sent_in_window = 0;
    for e in sim.trace().events() {
        if let TraceEvent::Send { t_ns, from, to, .. } = e {
            let inside = (100 * MS..300 * MS).contains(t_ns);
            if inside && side(from.0) != side(to.0) {
                crossing_sent_in_window += 1;
            }
        }
    }
    let dropped: Vec<_> = sim
        .trace()
        .events()
        .iter()
        .filter_map(|e| match e {
            TraceEvent::Drop { t_ns, from, to, reason } => Some((*t_ns, from.0, to.0, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(dropped.len(), crossing_sent_in_window);
    assert!(crossing_sent_in_window > 0);
    for (t, from, to, reason) in &dropped {
        assert_eq!(*reason, DropReason::Partition);
        assert!((100 * MS..300 * MS).contains(t), "dropped outside the window at {t}");
        assert_ne!(side(*from), side(*to), "dropped a message within one side");
    }
    // Every message not dropped was delivered (nothing else is lost on this network).
    let sends =
        sim.trace().events().iter().filter(|e| matches!(e, TraceEvent::Send { .. })).count();
    assert_eq!(deliveries(&sim).len() + dropped.len(), sends);
    // After healing, crossing messages flow again.
    assert!(deliveries(&sim).iter().any(|(t, f, to)| *t > 300 * MS && side(*f) != side(*to)));
}

#[test]
fn a_crashed_node_sends_nothing_and_resumes_after_restart() {
    let mut config = recording(3);
    config.faults = vec![
        Fault { at_ns: 100 * MS, node: NodeId(2), kind: FaultKind::Crash },
        Fault { at_ns: 250 * MS, node: NodeId(2), kind: FaultKind::Restart },
    ];
    let mut sim = simulate(config, pinger(&[0, 1, 2], None, 10 * MS, 40, 8));
    sim.run();
    let sends_from_2: Vec<u64> = sim
        .trace()
        .events()
        .iter()
        .filter_map(|e| match e {
            TraceEvent::Send { t_ns, from: NodeId(2), .. } => Some(*t_ns),
            _ => None,
        })
        .collect();
    assert!(sends_from_2.iter().all(|t| *t < 100 * MS || *t >= 250 * MS), "{sends_from_2:?}");
    assert!(sends_from_2.iter().any(|t| *t >= 250 * MS), "restarted node sends again");
    // Messages that reached node 2 while it was down were dropped, none delivered.
    assert!(deliveries(&sim).iter().all(|(t, _, to)| *to != 2 || *t < 100 * MS || *t >= 250 * MS));
    let report = sim.finish();
    assert!(report.dropped.receiver_down > 0);
}

#[test]
fn before_gst_messages_are_held_and_after_it_they_arrive_within_delta() {
    let mut config = recording(2);
    config.duration_ns = 500 * MS;
    config.network.latency_ns = 5 * MS;
    config.network.jitter = Jitter::Uniform { max_ns: 50 * MS };
    config.network.loss = 0.5;
    config.network.gst = Some(Gst { at_ns: 200 * MS, delta_ns: 10 * MS, before: BeforeGst::Hold });
    let mut sim = simulate(config, pinger(&[0], Some(1), 10 * MS, 40, 8));
    sim.run();
    let sends: Vec<u64> = sim
        .trace()
        .events()
        .iter()
        .filter_map(|e| match e {
            TraceEvent::Send { t_ns, .. } => Some(*t_ns),
            _ => None,
        })
        .collect();
    let delivered = deliveries(&sim);
    // Held messages arrive at GST + their delay, never before GST.
    assert!(delivered.iter().all(|(t, ..)| *t >= 200 * MS));
    // After GST nothing is lost, and each message arrives within Δ. Links are FIFO, so the
    // deliveries of the sends after GST are the last ones, in order.
    let after: Vec<u64> = sends.iter().copied().filter(|t| *t >= 200 * MS).collect();
    assert!(delivered.len() >= after.len());
    let late = &delivered[delivered.len() - after.len()..];
    for (s, (d, ..)) in after.iter().zip(late) {
        assert!(d - s <= 10 * MS, "sent {s}, delivered {d}");
    }
    // Before GST, half the messages were lost.
    let before = sends.len() - after.len();
    let held = delivered.len() - after.len();
    assert!(held < before && held > 0, "{held} of {before} held messages arrived");
}

#[test]
fn duplication_delivers_twice() {
    let mut config = recording(2);
    config.network.duplicate = 1.0;
    let mut sim = simulate(config, pinger(&[0], Some(1), 10 * MS, 5, 8));
    sim.run();
    assert_eq!(deliveries(&sim).len(), 10);
}

#[test]
fn a_busy_node_queues_its_inputs() {
    // Three senders ping node 3 at the same instant; handling costs 2 ms each, so node 3
    // handles them at t, t + 2 ms and t + 4 ms, in arrival order.
    let mut config = recording(4);
    config.processing = ProcessingConfig { per_event_ns: 2 * MS, per_verify_ns: 0, per_sync_ns: 0 };
    let mut sim = simulate(config, pinger(&[0, 1, 2], Some(3), 10 * MS, 1, 8));
    sim.run();
    let at_3: Vec<(u64, u16)> =
        deliveries(&sim).iter().filter(|d| d.2 == 3).map(|(t, from, _)| (*t, *from)).collect();
    // The senders' timers fire at 10 ms; each sender is busy 2 ms first, so pings leave at
    // 12 ms and arrive at 22 ms.
    assert_eq!(at_3, vec![(22 * MS, 0), (24 * MS, 1), (26 * MS, 2)]);
}

#[test]
fn garbage_bytes_are_decode_errors_at_every_receiver() {
    let mut config = SimConfig::new(4);
    config.duration_ns = 300 * MS;
    let mut sim = simulate(config, pinger(&[0, 1, 2, 3], None, 10 * MS, 25, 16));
    sim.set_adversary(NodeId(3), Box::new(Garbler { len_max: 64, keep_original: 0.0 }));
    let report = sim.run();
    for detail in &report.nodes_detail[..3] {
        assert!(detail.decode_errors > 0, "node {} saw no garbage", detail.node);
    }
    assert_eq!(report.nodes_detail[3].decode_errors, 0);
    assert_eq!(
        report.dropped.decode_error,
        report.nodes_detail.iter().map(|d| d.decode_errors).sum::<u64>()
    );
    assert!(report.safety_ok);
}

#[test]
fn encoded_messages_survive_the_codec() {
    let mut config = recording(3);
    config.encode_messages = true;
    let mut sim = simulate(config, pinger(&[0], None, 10 * MS, 5, 100));
    let report = sim.run();
    assert_eq!(deliveries(&sim).len(), 10);
    assert_eq!(report.dropped.decode_error, 0);
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let run = |seed: u64| {
        let mut config = SimConfig::new(5);
        config.seed = seed;
        config.network.jitter = Jitter::Pareto { scale_ns: MS, cap_ns: 100 * MS };
        config.network.loss = 0.1;
        config.network.duplicate = 0.05;
        config.network.reorder_ns = Some(5 * MS);
        let mut sim = simulate(config, pinger(&[0, 1, 2, 3, 4], None, 7 * MS, 60, 20));
        sim.run()
    };
    let (a, b, c) = (run(1), run(1), run(2));
    assert_eq!(a.trace_digest, b.trace_digest);
    assert_eq!(a.events, b.events);
    assert_ne!(a.trace_digest, c.trace_digest);
}
