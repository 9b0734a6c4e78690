//! What a run produces: commits checked as they happen, the workload's submissions, and the
//! report at the end.

use super::*;
use agora_store::{LedgerError, Outcome};

impl<P: Protocol, A: Application> Simulation<P, A> {
    pub(super) fn commit(&mut self, node: NodeId, block: Block, proof: Vec<Certificate>, at: u64) {
        let n = &mut self.nodes[node.index()];
        // The block store is durable at once, as a redb commit is: the ledger flushes per block.
        let outcome = n.ledger.apply(block.clone(), proof, &mut self.memo);
        let applied = match outcome {
            Ok(Outcome::Applied(applied)) => applied,
            Ok(Outcome::Held) => {
                // A restarted engine finalizing again what its application already holds: the
                // node applies it once; a different block at that height is a fork.
                if n.honest {
                    self.checker.on_refinalize(at, node, &block);
                }
                return;
            }
            Err(LedgerError::Gap { .. }) => {
                // An engine that skipped a height: the checker names it.
                if n.honest {
                    let state = n.ledger.app().state_digest();
                    self.checker.on_commit(at, node, &block, state);
                }
                return;
            }
            Err(error) => panic!("an in-memory ledger fails only on a gap: {error}"),
        };
        n.ledger.flush().expect("an in-memory block store always writes");
        n.log.update_digest(&block.digest());
        let honest = n.honest;
        if self.trace.enabled() {
            self.trace.push(TraceEvent::Commit {
                t_ns: at,
                node,
                height: block.height().0,
                digest: block.digest(),
                txs: block.batch().len() as u64,
            });
        }
        if !honest {
            return;
        }
        if let Some(hook) = self.client_hook.as_mut() {
            let mut out = std::mem::take(&mut self.hook_out);
            hook.on_commit(at, node, &block, self.nodes[node.index()].ledger.app(), &mut out);
            for (when, to, tx) in out.drain(..) {
                if to.index() < self.nodes.len() {
                    self.submit_at(when.max(at), to, tx);
                }
            }
            self.hook_out = out;
        }
        let first_at_height = self.checker.canonical().count() < block.height().0 as usize;
        self.checker.on_commit(at, node, &block, applied.state_digest);
        if first_at_height && self.checker.violations().is_empty() {
            let h = block.header();
            self.finalized_blocks.push(FinalizedBlock {
                height: h.height.0,
                round: h.round.0,
                proposer: h.proposer,
                digest: block.digest(),
                txs: block.batch().len() as u64,
                proposed_at_ns: h.created_at_ns,
                finalized_at_ns: at,
            });
        }
        for tx in block.batch().transactions() {
            if let Some((submitted, to)) = self.accepted.get(&tx.id())
                && *to == node
            {
                let latency = at.saturating_sub(*submitted);
                self.latencies.push(latency);
                if let Some(c) = self.latency_classes.as_mut() {
                    let class = (c.classify)(tx).min(c.samples.len() - 1);
                    c.samples[class].push(latency);
                }
            }
        }
    }

    /// The origins of the finalized transactions: the checker's three, the submitted ones
    /// split by whether an honest node accepted them.
    fn finalized_origins(&self) -> FinalizedOrigins {
        let (submitted, byzantine_client, invalid_signature) = self.checker.finalized_origins();
        let honest = self.accepted.keys().filter(|id| self.checker.finalized(id).is_some()).count();
        let honest = honest as u64;
        FinalizedOrigins {
            honest,
            via_byzantine_node: submitted.saturating_sub(honest),
            byzantine_client,
            invalid_signature,
        }
    }

    pub(super) fn generate_workload(&mut self) {
        let Some(w) = self.config.workload.clone() else {
            return;
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ WORKLOAD_STREAM);
        let keys: Vec<SecretKey> = (0..w.clients as u64)
            .map(|i| SecretKey::from_seed(self.config.seed ^ CLIENT_KEYS, i))
            .collect();
        let mut nonces = vec![0u64; w.clients];
        let mut t = w.start_ns as f64;
        let mean_gap_ns = 1e9 / w.rate_per_sec;
        loop {
            // Exponential inter-arrival times: a Poisson process.
            let u = 1.0 - rng.random::<f64>();
            t += -u.ln() * mean_gap_ns;
            if t >= w.end_ns as f64 || t >= self.config.duration_ns as f64 {
                break;
            }
            let client = rng.random_range(0..w.clients);
            let node = match &w.targets {
                Targets::Random => NodeId(rng.random_range(0..self.config.nodes as u16)),
                Targets::Nodes(list) => list[rng.random_range(0..list.len())],
            };
            let payload: Vec<u8> = (0..w.payload_bytes).map(|_| rng.random::<u8>()).collect();
            let tx = Transaction::new_signed(&keys[client], nonces[client], Bytes::from(payload))
                .expect("payload size was validated");
            nonces[client] += 1;
            self.submit_at(t as u64, node, tx);
        }
    }

    /// Ends the run: checks liveness if asked, and reports.
    pub fn finish(&mut self) -> SimReport {
        if let Some(live) = self.config.liveness {
            let gst = self.config.network.gst.map_or(0, |g| g.at_ns);
            // A node that is down at the end may have taken its transactions with it: only
            // those accepted by nodes still up are promised.
            let nodes = &self.nodes;
            let mut accepted: Vec<(Digest, u64)> = self
                .accepted
                .iter()
                .filter(|(_, (_, node))| nodes[node.index()].up)
                .map(|(tx, (t, _))| (*tx, *t))
                .collect();
            accepted.sort_unstable_by_key(|(tx, t)| (*t, *tx));
            self.checker.check_liveness(accepted.into_iter(), gst, live.bound_ns, self.now);
        }
        let longest_stall_ns = self
            .finalized_blocks
            .windows(2)
            .map(|w| w[1].finalized_at_ns.saturating_sub(w[0].finalized_at_ns))
            .max()
            .unwrap_or(0);
        let txs_finalized = self.checker.finalized_count() as u64;
        let seconds = self.now as f64 / 1e9;
        let nodes_detail = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeDetail {
                node: NodeId(i as u16),
                honest: n.honest,
                up: n.up,
                finalized_height: n.ledger.height().0,
                log_digest: n.log.finalize(),
                state_digest: n.ledger.app().state_digest(),
                sent: n.sent,
                decode_errors: n.decode_errors,
                journal_syncs: n.syncs,
                journal_bytes: agora_store::Journal::size_bytes(n.journal.journal()),
                restarts: n.restarts,
                recoveries: n.recoveries,
                app_recoveries: n.app_recoveries,
                crashes_mid_sync: n.crashes_mid_sync,
            })
            .collect();
        let violations = self.checker.violations().to_vec();
        SimReport {
            nodes: self.config.nodes,
            seed: self.config.seed,
            end_ns: self.now,
            safety_ok: violations.is_empty(),
            violations,
            submissions: self.submissions,
            txs_finalized,
            finalized_origins: self.finalized_origins(),
            tps_sim: if seconds > 0.0 { txs_finalized as f64 / seconds } else { 0.0 },
            latency: LatencySummary::of(&mut self.latencies.clone()),
            latency_by_class: self.latency_classes.as_ref().map_or_else(Vec::new, |c| {
                c.names
                    .iter()
                    .zip(&c.samples)
                    .map(|(name, s)| (name.clone(), LatencySummary::of(&mut s.clone())))
                    .collect()
            }),
            messages: self.traffic,
            by_kind: self.by_kind.clone(),
            dropped: self.dropped,
            finalized_blocks: self.finalized_blocks.clone(),
            nodes_detail,
            longest_stall_ns,
            events: self.events,
            deliveries: self.deliveries,
            signature_checks: (self.memo.calls(), self.memo.computed()),
            trace_digest: self.trace.digest(),
            speed: SimSpeed {
                wall_seconds: self.wall_seconds,
                events_per_sec: self.events as f64 / self.wall_seconds.max(1e-9),
                deliveries_per_sec: self.deliveries as f64 / self.wall_seconds.max(1e-9),
            },
        }
    }
}
