//! A node's actions leaving it: messages through the adversary, the network model (latency,
//! jitter, bandwidth, loss, duplication, reordering, partitions, GST) and the trace; timers
//! into the one event queue.

use super::*;

impl<P: Protocol, A: Application> Simulation<P, A> {
    pub(super) fn carry_out(
        &mut self,
        node: NodeId,
        actions: &mut Vec<Action<P::Message, P::Timer>>,
        depart: u64,
    ) {
        let mut driver = NodeDriver { sim: self, node, depart, synced: false };
        dispatch(actions.drain(..), &mut driver);
        // A pass that synced its journal holds the node, and what it sent after the records,
        // until the sync ends.
        let (depart, synced) = (driver.depart, driver.synced);
        let n = &mut self.nodes[node.index()];
        n.busy_until = n.busy_until.max(depart);
        if synced {
            let seq = n.syncs;
            self.schedule(depart, Event::Synced { node, seq });
        }
    }

    /// `node`'s engine sends `message` to member `to`: to each of its instances the network
    /// lets through (one without twins; to itself, this instance).
    pub(super) fn send_to_member(
        &mut self,
        node: NodeId,
        to: NodeId,
        message: P::Message,
        depart: u64,
    ) {
        let (kind, bytes) = self.size(&message);
        let me = self.identity(node);
        if self.config.twins.is_empty() || to == me {
            let to = if to == me { node } else { to };
            self.send(node, to, message, kind, bytes, depart);
            return;
        }
        let mut instances: Vec<NodeId> = self.instances_of(to).collect();
        if let Some(last) = instances.pop() {
            for instance in instances {
                self.send(node, instance, message.clone(), kind, bytes, depart);
            }
            self.send(node, last, message, kind, bytes, depart);
        }
    }

    /// `node`'s engine sends `message` to every instance of every other member.
    pub(super) fn broadcast_from(&mut self, node: NodeId, message: P::Message, depart: u64) {
        let (kind, bytes) = self.size(&message);
        let me = self.identity(node);
        let n = self.nodes.len() as u16;
        for to in (0..n).map(NodeId) {
            if self.identity(to) != me {
                self.send(node, to, message.clone(), kind, bytes, depart);
            }
        }
    }

    pub(super) fn size(&self, message: &P::Message) -> (&'static str, u64) {
        (message.kind(), message.encoded_len() as u64)
    }

    /// A message from `from`'s engine to `to`: through the adversary if `from` has one.
    pub(super) fn send(
        &mut self,
        from: NodeId,
        to: NodeId,
        message: P::Message,
        kind: &'static str,
        bytes: u64,
        depart: u64,
    ) {
        let me = self.identity(from);
        let Some(adversary) = self.adversaries[from.index()].as_mut() else {
            let payload = if self.config.encode_messages {
                Payload::Raw(
                    codec::encode(&message).expect("engine messages encode within the limit"),
                )
            } else {
                Payload::Message(message)
            };
            self.transmit(from, to, payload, kind, bytes, depart);
            return;
        };
        let mut env = AdversaryEnv {
            now_ns: depart,
            me,
            key: &self.secrets[me.index()],
            committee: &self.committee,
            rng: &mut self.adversary_rng,
            declared: &mut self.declared,
        };
        let mut out = std::mem::take(&mut self.emissions);
        adversary.on_send(&mut env, to, message, &mut out);
        self.emit(from, &mut out, depart);
        self.emissions = out;
    }

    /// What an adversary pushed, put on the wire from `from` at `depart` (plus each
    /// emission's delay), with the transactions it declared made known to the checker.
    pub(super) fn emit(&mut self, from: NodeId, out: &mut Vec<Emission<P::Message>>, depart: u64) {
        for tx in std::mem::take(&mut self.declared) {
            self.checker.submitted(tx.id());
        }
        for emission in out.drain(..) {
            let (kind, bytes) = match &emission.payload {
                Payload::Message(m) => self.size(m),
                Payload::Raw(b) => ("raw", b.len() as u64),
            };
            self.transmit(
                from,
                emission.to,
                emission.payload,
                kind,
                bytes,
                depart.saturating_add(emission.delay_ns),
            );
        }
    }

    /// Puts a payload on the link `from → to`: loss, partitions, uplink bandwidth, latency,
    /// jitter, GST, ordering and duplication, in that order.
    pub(super) fn transmit(
        &mut self,
        from: NodeId,
        to: NodeId,
        payload: Payload<P::Message>,
        kind: &'static str,
        bytes: u64,
        depart: u64,
    ) {
        self.traffic.add(bytes);
        self.by_kind.entry(kind).or_default().add(bytes);
        self.nodes[from.index()].sent.add(bytes);
        if self.trace.enabled() {
            let instance = match &payload {
                Payload::Message(m) => m.instance(),
                Payload::Raw(_) => None,
            };
            self.trace.push(TraceEvent::Send { t_ns: depart, from, to, kind, bytes, instance });
        }
        if from == to {
            self.schedule(depart, Event::Arrive { to, from, payload, sent_ns: depart });
            return;
        }
        let net = &self.config.network;
        let (gst, loss, bandwidth_bps, latency_ns) =
            (net.gst, net.loss, net.bandwidth_bps, net.latency_ns);
        let synchronous = gst.is_some_and(|g| depart >= g.at_ns);
        let partitioned =
            !synchronous && net.partitions.iter().any(|p| p.separates(from, to, depart));
        if !synchronous {
            if partitioned {
                self.dropped.partition += 1;
                self.trace_drop(from, to, DropReason::Partition);
                return;
            }
            if loss > 0.0 && self.rng.random_bool(loss) {
                self.dropped.loss += 1;
                self.trace_drop(from, to, DropReason::Loss);
                return;
            }
        }
        // The sender's uplink sends one message after another.
        let sender = &mut self.nodes[from.index()];
        let start = depart.max(sender.uplink_free_at);
        let transmission = match bandwidth_bps {
            Some(bps) => (u128::from(bytes) * 8 * 1_000_000_000).div_ceil(u128::from(bps)) as u64,
            None => 0,
        };
        sender.uplink_free_at = start + transmission;
        let left = start + transmission;
        let mut delay = latency_ns + self.jitter();
        let mut arrival = left + delay;
        if let Some(gst) = gst {
            delay = delay.min(gst.delta_ns);
            arrival = if synchronous {
                left + delay
            } else {
                match gst.before {
                    BeforeGst::Hold => left.max(gst.at_ns) + delay,
                    BeforeGst::Delay { max_ns } => {
                        let extra = self.rng.random_range(0..=max_ns);
                        // Partial synchrony: sent before GST, delivered by GST + Δ.
                        (left + delay + extra).min(left.max(gst.at_ns) + gst.delta_ns)
                    }
                }
            };
        }
        let link = from.index() * self.nodes.len() + to.index();
        match self.config.network.reorder_ns {
            Some(max_ns) => arrival += self.rng.random_range(0..=max_ns),
            None => {
                arrival = arrival.max(self.link_last_arrival[link]);
                self.link_last_arrival[link] = arrival;
            }
        }
        let duplicate = self.config.network.duplicate;
        if duplicate > 0.0 && self.rng.random_bool(duplicate) {
            let later = arrival + self.rng.random_range(0..=self.config.network.latency_ns);
            self.schedule(
                later,
                Event::Arrive { to, from, payload: payload.clone(), sent_ns: depart },
            );
        }
        self.schedule(arrival, Event::Arrive { to, from, payload, sent_ns: depart });
    }

    pub(super) fn jitter(&mut self) -> u64 {
        match self.config.network.jitter {
            Jitter::None => 0,
            Jitter::Uniform { max_ns } => self.rng.random_range(0..=max_ns),
            Jitter::Pareto { scale_ns, cap_ns } => {
                // Inverse transform: scale · (U^(-1/α) − 1), α = 1.5, U in (0, 1].
                let u = 1.0 - self.rng.random::<f64>();
                let extra = scale_ns as f64 * (u.powf(-1.0 / 1.5) - 1.0);
                (extra.min(cap_ns as f64)) as u64
            }
        }
    }

    pub(super) fn trace_drop(&mut self, from: NodeId, to: NodeId, reason: DropReason) {
        if self.trace.enabled() {
            self.trace.push(TraceEvent::Drop { t_ns: self.now, from, to, reason });
        }
    }
}

/// One node's actions, carried out in the simulator: messages leave when the node's handling
/// ends (`depart`), timers are events in the one queue.
struct NodeDriver<'a, P: Protocol, A: Application> {
    sim: &'a mut Simulation<P, A>,
    node: NodeId,
    depart: u64,
    /// The pass synced its journal: what it sends from now on waits for the sync to end.
    synced: bool,
}

impl<P: Protocol, A: Application> Driver<P::Message, P::Timer> for NodeDriver<'_, P, A> {
    fn send(&mut self, to: NodeId, message: P::Message) {
        if self.synced {
            self.sim.nodes[self.node.index()].held.push(Held::To(to, message));
        } else {
            self.sim.send_to_member(self.node, to, message, self.depart);
        }
    }

    fn broadcast(&mut self, message: P::Message) {
        if self.synced {
            self.sim.nodes[self.node.index()].held.push(Held::All(message));
        } else {
            self.sim.broadcast_from(self.node, message, self.depart);
        }
    }

    fn set_timer(&mut self, timer: P::Timer, after_ns: u64) {
        let at = self.sim.now.saturating_add(after_ns);
        let input = Input::Timer { timer: timer.clone(), id: self.sim.seq };
        let id = self.sim.schedule(at, Event::Input { node: self.node, input });
        self.sim.nodes[self.node.index()].timers.arm(timer, id);
    }

    fn cancel_timer(&mut self, timer: P::Timer) {
        self.sim.nodes[self.node.index()].timers.cancel(&timer);
    }

    fn commit(&mut self, block: Block, proof: Vec<Certificate>) {
        // Behind this pass's sync, or behind an earlier pass's commits still held: blocks are
        // applied in the order they were committed.
        let node = &mut self.sim.nodes[self.node.index()];
        let behind = node.held.iter().any(|h| matches!(h, Held::Commit(..)));
        if self.synced || behind {
            let appended = node.journal.journal().unsynced();
            node.held_commit_mark.get_or_insert(appended);
            node.held.push(Held::Commit(block, proof));
        } else {
            self.sim.commit(self.node, block, proof, self.depart);
        }
    }

    fn persist(&mut self, record: Bytes, checkpoint: Option<u64>) {
        let journal = &mut self.sim.nodes[self.node.index()].journal;
        journal.persist(&record, checkpoint).expect("engine records are below the journal's limit");
    }

    /// The sync takes `per_sync_ns`; what the pass sends after it leaves when it ends.
    fn sync(&mut self) {
        let cost = self.sim.config.processing.per_sync_ns;
        let n = &mut self.sim.nodes[self.node.index()];
        n.syncs += 1;
        if cost == 0 {
            // A disk that syncs in no time: nothing waits, and no crash can come between.
            n.journal.sync().expect("an in-memory journal always syncs");
            return;
        }
        let start = self.depart;
        // A sync starting with none in flight writes what is appended now; one chained behind
        // another (a second sync of the pass) leaves the first's count: a crash keeps a prefix
        // of what was being written, never a record appended after the write began.
        if n.sync_until.is_none_or(|until| until <= start) {
            n.crash_covers = n.journal.journal().unsynced();
        }
        self.depart = start.saturating_add(cost);
        self.synced = true;
        n.sync_until = Some(self.depart);
        if std::mem::take(&mut n.crash_in_sync) {
            n.sync_crash_scheduled = true;
            n.crash_covers = n.journal.journal().unsynced();
            self.sim.schedule(start + cost / 2, Event::CrashInSync { node: self.node });
        }
    }
}
