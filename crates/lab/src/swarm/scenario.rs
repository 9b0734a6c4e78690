//! A scenario: what the swarm draws from a seed (committee, faults, network, load, or a Twins
//! schedule), and the simulator and engine configurations it becomes.

use super::*;

/// How many nodes may be faulty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// At most f: safety and liveness must hold.
    Within,
    /// Exactly f + 1: safety must hold if they all only crash; with a Byzantine one it may fail.
    Beyond,
}

/// A deliberately broken engine, to prove the campaign catches it ("teeth").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weakening {
    /// Quorums one vote smaller than the protocol needs.
    QuorumOneSmaller,
    /// Streamlet votes for any proposal that extends the finalized chain, not only a longest
    /// notarized one.
    VoteExtendsFinalized,
    /// PBFT counts the primary's pre-prepare as one of the 2f prepares.
    PrePrepareCountsAsPrepare,
    /// A node sends its vote (Streamlet's vote, PBFT's prepare) before the record that makes
    /// it remember the vote is durable; restarts recover from the journal.
    VoteBeforeDurable,
    /// Restarts lose the journal: a node comes back remembering nothing it voted for.
    Amnesia,
    /// Simplex sends a finalize vote for an iteration it voted to skip.
    FinalizeAfterSkip,
    /// Simplex votes for a proposal whose parent chain is not notarized.
    VoteUnnotarizedChain,
    /// HotStuff votes without the safe-node (lock) check.
    VoteWithoutLock,
    /// Two-chain HotStuff commits on two chains but locks and votes by the three-chain rules.
    TwoChainCommitThreeChainLock,
}

impl Weakening {
    /// Name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Weakening::QuorumOneSmaller => "quorum-one-smaller",
            Weakening::VoteExtendsFinalized => "vote-extends-finalized",
            Weakening::PrePrepareCountsAsPrepare => "pre-prepare-counts-as-prepare",
            Weakening::VoteBeforeDurable => "vote-before-durable",
            Weakening::Amnesia => "amnesia",
            Weakening::FinalizeAfterSkip => "finalize-after-skip",
            Weakening::VoteUnnotarizedChain => "vote-unnotarized-chain",
            Weakening::VoteWithoutLock => "vote-without-lock",
            Weakening::TwoChainCommitThreeChainLock => "two-chain-commit-three-chain-lock",
        }
    }

    /// The weakening named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Weakening::QuorumOneSmaller,
            Weakening::VoteExtendsFinalized,
            Weakening::PrePrepareCountsAsPrepare,
            Weakening::VoteBeforeDurable,
            Weakening::Amnesia,
            Weakening::FinalizeAfterSkip,
            Weakening::VoteUnnotarizedChain,
            Weakening::VoteWithoutLock,
            Weakening::TwoChainCommitThreeChainLock,
        ]
        .into_iter()
        .find(|w| w.name() == s)
    }
}

/// What is wrong with one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFault {
    /// Its messages go through this adversary.
    Byzantine(Behaviour),
    /// It stops at `at_ns`, and starts again (with its state) at `restart_ns` if given.
    Crash {
        /// When it stops.
        at_ns: u64,
        /// When it starts again.
        restart_ns: Option<u64>,
    },
}

/// How a scenario's nodes restart, and the disk they restart from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restarts {
    /// A node that restarts is a fresh engine restored from its journal
    /// ([`FaultKind::Recover`]); otherwise it resumes with its memory ([`FaultKind::Restart`]:
    /// the stable storage of everything the papers assume). Three restarts in four recover.
    pub recover: bool,
    /// How long one journal sync takes: a crash within a sync loses a suffix of what it was
    /// writing.
    pub sync_ns: u64,
    /// An honest member that crashes and restarts before GST.
    pub honest: Option<HonestRestart>,
}

/// An honest member's crash and restart, before GST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HonestRestart {
    /// Which member: the `pick`-th (modulo their count) that is neither faulty nor twinned.
    pub pick: u64,
    /// When it goes down.
    pub down_ns: u64,
    /// When it comes back.
    pub up_ns: u64,
    /// It goes down halfway through its first journal sync after `down_ns`
    /// ([`FaultKind::CrashInSync`]), rather than at `down_ns`.
    pub in_sync: bool,
}

impl Restarts {
    /// The restarts of `seed`, for a run whose GST is `gst_ns`.
    fn drawn(protocol: ProtocolChoice, seed: u64, gst_ns: u64, delta_ns: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ RESTART_STREAM);
        let streamlet_recovers = protocol == ProtocolChoice::Streamlet && rng.random_bool(0.75);
        let sync_ns = rng.random_range(100..=3_000) * 1_000;
        let honest = rng.random_bool(0.5).then(|| {
            let down_ns = rng.random_range(0..gst_ns.max(1));
            // Half are a blink, back within 2Δ: a restart in the round it crashed in is where
            // a forgotten vote could be cast again.
            let up_ns = if rng.random_bool(0.5) {
                down_ns + rng.random_range(1..=2 * delta_ns.max(1))
            } else {
                rng.random_range(down_ns..=gst_ns)
            };
            HonestRestart { pick: rng.random(), down_ns, up_ns, in_sync: rng.random_bool(0.5) }
        });
        // PBFT journals since Streamlet did: its draw comes last, so that a PBFT seed's other
        // draws are those of the campaigns before.
        let recover =
            streamlet_recovers || (protocol != ProtocolChoice::Streamlet && rng.random_bool(0.75));
        Self { recover, sync_ns, honest }
    }
}

/// One random scenario, all drawn from its seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The protocol under test.
    pub protocol: ProtocolChoice,
    /// The seed everything derives from (scenario, simulator, keys, leaders).
    pub seed: u64,
    /// Committee size.
    pub nodes: usize,
    /// Whether the committee size was given rather than drawn.
    pub nodes_given: bool,
    /// The fault budget the scenario was drawn under.
    pub budget: Budget,
    /// Faulty nodes.
    pub faults: Vec<(NodeId, NodeFault)>,
    /// The network, with GST.
    pub network: NetworkConfig,
    /// Δ: the engines' delay bound (Streamlet's epoch is 2Δ; PBFT's view timeout is 10Δ).
    pub delta_ns: u64,
    /// Every transaction accepted by an honest node still up at the end is final within this
    /// long after `max(submission, GST)`.
    pub liveness_bound_ns: u64,
    /// Client transactions per second.
    pub tx_rate: f64,
    /// Submissions stop here.
    pub load_end_ns: u64,
    /// The run ends here.
    pub duration_ns: u64,
    /// A deliberately broken engine, if any.
    pub weakening: Option<Weakening>,
    /// Members that run twice (Twins): the twin is instance `nodes + j`.
    pub twins: Vec<NodeId>,
    /// How nodes restart.
    pub restarts: Restarts,
    /// HotStuff's commit rule (ignored by the other protocols).
    pub chain: ChainRule,
}

impl Scenario {
    /// A Twins scenario (Bano et al., 2020): n = 4 and a second instance of one member, with
    /// the same key and unmodified engine code. Time is cut into rounds (an epoch, or a third
    /// of a PBFT view timeout); each round until GST puts the five instances in two random
    /// groups, or leaves them together, so the twins hear different things, equivocate and
    /// may lose their locks. The leader schedule is drawn too (Streamlet's hash seed; for PBFT
    /// the twinned member is often the first primary). After GST the network is whole and
    /// synchronous. No loss or duplication: the partitions are the adversary.
    ///
    /// Beyond the budget, two members are twinned (f + 1 = 2 Byzantine): safety may fail. Half
    /// of those scenarios (decided on a stream of their own) also hold a split brain for a run
    /// of consecutive rounds: each honest member with one instance of each twin, two quorums
    /// that cannot hear each other. That is the schedule two twins need to fork a correct
    /// engine; random per-round groups rarely line it up for long enough, now that a node left
    /// behind catches up as soon as it hears from the others.
    pub fn twins(protocol: ProtocolChoice, seed: u64, budget: Budget) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SCENARIO_STREAM ^ 0x7717);
        let n = 4usize;
        let first = match protocol {
            ProtocolChoice::Pbft if rng.random_bool(0.5) => NodeId(0),
            _ => NodeId(rng.random_range(0..n as u16)),
        };
        let mut twinned = vec![first];
        if budget == Budget::Beyond {
            twinned.push(NodeId((first.0 + 1 + rng.random_range(0..3u16)) % n as u16));
        }
        let instances = (n + twinned.len()) as u16;
        let latency_ns = rng.random_range(5..=20) * MS;
        let delta_ns = latency_ns + 10 * MS;
        let round_ns = match protocol {
            ProtocolChoice::Streamlet => 2 * delta_ns,
            ProtocolChoice::Pbft => 10 * delta_ns / 3,
            // A Simplex iteration lasts 2δ when it goes well and 3Δ + δ when it is skipped:
            // rounds of one Δ split some iterations' votes and not others'.
            ProtocolChoice::Simplex => delta_ns,
            // A HotStuff view lasts 2δ, or its 3Δ timer and δ more, and a commit takes three
            // or four views in a row: rounds of 4Δ hold a split long enough for one side to
            // certify a chain (shorter ones only ever stall both sides).
            ProtocolChoice::HotStuff => 4 * delta_ns,
        };
        let rounds = rng.random_range(6..=24u64);
        let gst_ns = rounds * round_ns;
        let partitions = (0..rounds)
            .filter_map(|r| {
                // A third of the rounds have everyone together.
                if rng.random_range(0..3u8) == 0 {
                    return None;
                }
                let side: Vec<NodeId> =
                    (0..instances).filter(|_| rng.random_bool(0.5)).map(NodeId).collect();
                Some(Partition {
                    start_ns: r * round_ns,
                    end_ns: (r + 1) * round_ns,
                    groups: vec![side],
                })
            })
            .collect();
        let partitions = match budget {
            Budget::Beyond => split_brain(seed, n, &twinned, rounds, round_ns, partitions),
            Budget::Within => partitions,
        };
        let network = NetworkConfig {
            latency_ns,
            jitter: Jitter::None,
            bandwidth_bps: Some(100_000_000),
            loss: 0.0,
            duplicate: 0.0,
            reorder_ns: None,
            partitions,
            gst: Some(Gst { at_ns: gst_ns, delta_ns, before: BeforeGst::Delay { max_ns: 0 } }),
        };
        let tx_rate = rng.random_range(20..=100) as f64;
        Self {
            nodes_given: true,
            twins: twinned,
            ..Self::timed(protocol, seed, n, budget, network, delta_ns, tx_rate)
        }
    }

    /// The scenario of `seed`. `nodes` fixes the committee size; otherwise it is drawn from
    /// 4 to 7, and within the budget one seed in three gives the tightest case instead
    /// ([`Self::drawn`] with `tight`: n = 7 with exactly f faulty), decided on a random stream
    /// of its own. A fixed committee size keeps the plain draw, so that a campaign at a given
    /// size still sees every fault count.
    pub fn generate(
        protocol: ProtocolChoice,
        seed: u64,
        nodes: Option<usize>,
        budget: Budget,
    ) -> Self {
        let tight = budget == Budget::Within
            && nodes.is_none()
            && ChaCha8Rng::seed_from_u64(seed ^ TIGHT_STREAM).random_bool(1.0 / 3.0);
        Self::drawn(protocol, seed, nodes, budget, tight)
    }

    /// The scenario drawn from `seed`. With `tight` (within the budget only) it is the tightest
    /// the budget allows: n = 7 unless `nodes` is given, and exactly f faulty nodes, so that
    /// every quorum needs every live node. Without it, n is drawn from 4 to 7 and the number of
    /// faulty nodes from 0 to f; a seed's untightened scenario never changes, so a seed that
    /// once failed names the same scenario as it did then.
    pub fn drawn(
        protocol: ProtocolChoice,
        seed: u64,
        nodes: Option<usize>,
        budget: Budget,
        tight: bool,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SCENARIO_STREAM);
        let n = match nodes {
            Some(n) => n,
            None => {
                let drawn = [4, 4, 5, 7][rng.random_range(0..4)];
                if tight { 7 } else { drawn }
            }
        }
        .max(1);
        let f = (n - 1) / 3;
        let faulty = match budget {
            Budget::Within => {
                let drawn = rng.random_range(0..=f);
                if tight { f } else { drawn }
            }
            // (Beyond the budget there is nothing tighter than f + 1.)
            Budget::Beyond => (f + 1).min(n),
        };
        let gst_ns = rng.random_range(500..=3_000) * MS;
        let mut ids: Vec<u16> = (0..n as u16).collect();
        let mut faults = Vec::new();
        // Half the seeds' equivocators tell the other story late too (on a stream of their own,
        // so a seed's other draws are those of the campaigns before).
        let late = ChaCha8Rng::seed_from_u64(seed ^ LATE_STREAM).random_bool(0.5);
        // Simplex and HotStuff scenarios (new with the engines, so no older seed changes) turn
        // the other half of their equivocators into genesis extenders.
        let extend = matches!(protocol, ProtocolChoice::Simplex | ProtocolChoice::HotStuff);
        // HotStuff's genesis extenders fork one block back instead, half the time.
        let stale = protocol == ProtocolChoice::HotStuff
            && ChaCha8Rng::seed_from_u64(seed ^ STALE_STREAM).random_bool(0.5);
        for _ in 0..faulty {
            let node = NodeId(ids.swap_remove(rng.random_range(0..ids.len())));
            let fault = if rng.random_bool(0.6) {
                match Behaviour::DRAWN[rng.random_range(0..Behaviour::DRAWN.len())] {
                    Behaviour::Equivocate if late => {
                        NodeFault::Byzantine(Behaviour::LateEquivocate)
                    }
                    Behaviour::Equivocate if stale => NodeFault::Byzantine(Behaviour::StaleFork),
                    Behaviour::Equivocate if extend => {
                        NodeFault::Byzantine(Behaviour::ExtendGenesis)
                    }
                    behaviour => NodeFault::Byzantine(behaviour),
                }
            } else {
                let at_ns = rng.random_range(0..gst_ns);
                let restart_ns = rng.random_bool(0.5).then(|| rng.random_range(at_ns..=gst_ns));
                NodeFault::Crash { at_ns, restart_ns }
            };
            faults.push((node, fault));
        }
        faults.sort_by_key(|(node, _)| *node);
        let latency_ns = rng.random_range(5..=40) * MS;
        let jitter = match rng.random_range(0..3u8) {
            0 => Jitter::None,
            1 => Jitter::Uniform { max_ns: rng.random_range(1..=20) * MS },
            _ => Jitter::Pareto { scale_ns: 2 * MS, cap_ns: rng.random_range(5..=30) * MS },
        };
        let jitter_max = match jitter {
            Jitter::None => 0,
            Jitter::Uniform { max_ns } => max_ns,
            Jitter::Pareto { cap_ns, .. } => cap_ns,
        };
        let reorder_ns = rng.random_bool(0.3).then(|| rng.random_range(1..=10) * MS);
        let delta_ns = latency_ns + jitter_max + reorder_ns.unwrap_or(0) + 10 * MS;
        let partitions = (0..rng.random_range(0..=2u8))
            .map(|_| {
                let start_ns = rng.random_range(0..gst_ns);
                let end_ns = rng.random_range(start_ns..=gst_ns);
                let side: Vec<NodeId> =
                    (0..n as u16).filter(|_| rng.random_bool(0.5)).map(NodeId).collect();
                Partition { start_ns, end_ns, groups: vec![side] }
            })
            .collect();
        let before = if rng.random_bool(0.5) {
            BeforeGst::Hold
        } else {
            BeforeGst::Delay { max_ns: rng.random_range(0..=500) * MS }
        };
        let network = NetworkConfig {
            latency_ns,
            jitter,
            bandwidth_bps: Some(100_000_000),
            loss: rng.random_range(0..=10) as f64 / 100.0,
            duplicate: rng.random_range(0..=5) as f64 / 100.0,
            reorder_ns,
            partitions,
            gst: Some(Gst { at_ns: gst_ns, delta_ns, before }),
        };
        let tx_rate = rng.random_range(20..=100) as f64;
        Self {
            nodes_given: nodes.is_some(),
            faults,
            ..Self::timed(protocol, seed, n, budget, network, delta_ns, tx_rate)
        }
    }

    /// A scenario without faults on `network`, with what follows from its GST: load for a
    /// second after it, then the liveness bound to let the last of it finalize.
    pub(super) fn timed(
        protocol: ProtocolChoice,
        seed: u64,
        nodes: usize,
        budget: Budget,
        network: NetworkConfig,
        delta_ns: u64,
        tx_rate: f64,
    ) -> Self {
        let gst_ns = network.gst.map_or(0, |g| g.at_ns);
        let liveness_bound_ns = match protocol {
            // Sixty epochs: long enough for three consecutive honest leaders to line up.
            ProtocolChoice::Streamlet => 120 * delta_ns,
            // A handful of view changes, each waiting at most a few doubled timeouts.
            ProtocolChoice::Pbft => 400 * delta_ns,
            // Iterations of up to 4Δ each: enough for many leaders in a row to be tried, and
            // for a node left behind to catch up at its timers.
            ProtocolChoice::Simplex => 120 * delta_ns,
            // Views of up to 3Δ, growing by half past three without a QC: enough for the four
            // honest leaders in a row that a three-chain commit needs to line up, even at
            // n = 7 with two faulty (one window in four), after timers grown before GST.
            ProtocolChoice::HotStuff => 400 * delta_ns,
        };
        let load_end_ns = gst_ns + 1_000 * MS;
        Self {
            protocol,
            seed,
            nodes,
            nodes_given: false,
            budget,
            faults: Vec::new(),
            network,
            delta_ns,
            liveness_bound_ns,
            tx_rate,
            load_end_ns,
            duration_ns: load_end_ns + liveness_bound_ns,
            weakening: None,
            twins: Vec::new(),
            restarts: Restarts::drawn(protocol, seed, gst_ns, delta_ns),
            chain: ChainRule::Three,
        }
    }

    /// True when some faulty node is Byzantine (not only crashed).
    pub fn has_byzantine(&self) -> bool {
        !self.twins.is_empty()
            || self.faults.iter().any(|(_, f)| matches!(f, NodeFault::Byzantine(_)))
    }

    /// The run this scenario describes: its engine, its simulator configuration, and its
    /// Byzantine members with their behaviours.
    pub fn spec(&self, trace: TraceMode) -> RunSpec {
        let engine = match self.protocol {
            ProtocolChoice::Streamlet => EngineConfig::Streamlet(self.streamlet_config()),
            ProtocolChoice::Pbft => EngineConfig::Pbft(self.pbft_config()),
            ProtocolChoice::Simplex => EngineConfig::Simplex(self.simplex_config()),
            ProtocolChoice::HotStuff => EngineConfig::HotStuff(self.hotstuff_config()),
        };
        let byzantine = self
            .faults
            .iter()
            .filter_map(|(node, fault)| match fault {
                NodeFault::Byzantine(b) => Some((*node, *b)),
                NodeFault::Crash { .. } => None,
            })
            .collect();
        RunSpec { engine, sim: self.sim_config(trace), byzantine, market: None, keep_stores: false }
    }

    /// The simulator configuration.
    pub fn sim_config(&self, trace: TraceMode) -> SimConfig {
        let mut c = SimConfig::new(self.nodes);
        c.seed = self.seed;
        c.duration_ns = self.duration_ns;
        c.network = self.network.clone();
        c.trace = trace;
        c.twins = self.twins.clone();
        c.liveness = Some(LivenessCheck { bound_ns: self.liveness_bound_ns });
        c.workload = Some(Workload {
            rate_per_sec: self.tx_rate,
            start_ns: 0,
            end_ns: self.load_end_ns,
            clients: 8,
            payload_bytes: 32,
            targets: Targets::Random,
        });
        let restart = match self.weakening {
            Some(Weakening::Amnesia) => FaultKind::Amnesia,
            Some(Weakening::VoteBeforeDurable) => FaultKind::Recover,
            _ if self.restarts.recover => FaultKind::Recover,
            _ => FaultKind::Restart,
        };
        for (node, fault) in &self.faults {
            if let NodeFault::Crash { at_ns, restart_ns } = *fault {
                c.faults.push(Fault { at_ns, node: *node, kind: FaultKind::Crash });
                if let Some(at_ns) = restart_ns {
                    c.faults.push(Fault { at_ns, node: *node, kind: restart });
                }
            }
        }
        if let Some((node, honest)) = self.honest_restart() {
            let down = if honest.in_sync { FaultKind::CrashInSync } else { FaultKind::Crash };
            c.faults.push(Fault { at_ns: honest.down_ns, node, kind: down });
            c.faults.push(Fault { at_ns: honest.up_ns, node, kind: restart });
        }
        c.processing.per_sync_ns = self.restarts.sync_ns;
        c
    }

    /// An honest member's blink for this scenario: down halfway through a journal sync and back
    /// within 2Δ, the one window in which a vote whose record a crash lost matters. The
    /// campaign against the vote-before-durable mutant gives every scenario one.
    pub fn blink_in_sync(&self) -> HonestRestart {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ RESTART_STREAM ^ 1);
        let gst_ns = self.network.gst.as_ref().map_or(self.duration_ns / 2, |g| g.at_ns);
        let drawn = self.restarts.honest;
        let down_ns = drawn.map_or_else(|| rng.random_range(0..gst_ns.max(1)), |h| h.down_ns);
        let up_ns = down_ns + rng.random_range(1..=2 * self.delta_ns.max(1));
        let pick = drawn.map_or_else(|| rng.random(), |h| h.pick);
        HonestRestart { pick, down_ns, up_ns, in_sync: true }
    }

    /// The honest member that crashes and restarts, with its times, if the scenario has one.
    pub fn honest_restart(&self) -> Option<(NodeId, HonestRestart)> {
        let honest = self.restarts.honest?;
        let eligible: Vec<NodeId> = (0..self.nodes as u16)
            .map(NodeId)
            .filter(|n| !self.twins.contains(n) && self.faults.iter().all(|(f, _)| f != n))
            .collect();
        let node = *eligible.get((honest.pick % eligible.len().max(1) as u64) as usize)?;
        Some((node, honest))
    }

    /// The command that runs this scenario again.
    pub fn reproduce(&self) -> String {
        let mut cmd = format!(
            "cargo xtask swarm --protocol {} --first-seed {} --seeds 1",
            self.protocol.name(),
            self.seed
        );
        if self.protocol == ProtocolChoice::HotStuff && self.chain != ChainRule::Three {
            cmd += &format!(" --chain {}", self.chain.length());
        }
        if !self.twins.is_empty() {
            cmd += " --twins";
        } else if self.nodes_given {
            cmd += &format!(" --nodes {}", self.nodes);
        }
        if self.budget == Budget::Beyond {
            cmd += " --beyond-budget";
        }
        if let Some(w) = self.weakening {
            cmd += &format!(" --weaken {}", w.name());
        }
        cmd
    }

    pub(super) fn streamlet_config(&self) -> StreamletConfig {
        let mut c = StreamletConfig::new(self.delta_ns);
        c.leader = LeaderRule::Hashed { seed: self.seed };
        c.weaken = match self.weakening {
            Some(Weakening::QuorumOneSmaller) => Some(StreamletWeakening::QuorumOneSmaller),
            Some(Weakening::VoteExtendsFinalized) => Some(StreamletWeakening::VoteExtendsFinalized),
            Some(Weakening::VoteBeforeDurable) => Some(StreamletWeakening::VoteBeforeDurable),
            _ => None,
        };
        c
    }

    pub(super) fn simplex_config(&self) -> SimplexConfig {
        let mut c = SimplexConfig::new(self.delta_ns);
        c.leader = LeaderRule::Hashed { seed: self.seed };
        c.weaken = match self.weakening {
            Some(Weakening::QuorumOneSmaller) => Some(SimplexWeakening::QuorumOneSmaller),
            Some(Weakening::FinalizeAfterSkip) => Some(SimplexWeakening::FinalizeAfterSkip),
            Some(Weakening::VoteUnnotarizedChain) => Some(SimplexWeakening::VoteUnnotarizedChain),
            Some(Weakening::VoteBeforeDurable) => Some(SimplexWeakening::VoteBeforeDurable),
            _ => None,
        };
        c
    }

    pub(super) fn hotstuff_config(&self) -> HotStuffConfig {
        let mut c = HotStuffConfig::new(self.delta_ns).with_chain(self.chain);
        c.leader = LeaderRule::Hashed { seed: self.seed };
        c.weaken = match self.weakening {
            Some(Weakening::QuorumOneSmaller) => Some(HotStuffWeakening::QuorumOneSmaller),
            Some(Weakening::VoteWithoutLock) => Some(HotStuffWeakening::VoteWithoutLock),
            Some(Weakening::TwoChainCommitThreeChainLock) => {
                Some(HotStuffWeakening::TwoChainCommitThreeChainLock)
            }
            Some(Weakening::VoteBeforeDurable) => Some(HotStuffWeakening::VoteBeforeDurable),
            _ => None,
        };
        c
    }

    pub(super) fn pbft_config(&self) -> PbftConfig {
        let mut c = PbftConfig::new(10 * self.delta_ns);
        c.weaken = match self.weakening {
            Some(Weakening::QuorumOneSmaller) => Some(PbftWeakening::QuorumOneSmaller),
            Some(Weakening::PrePrepareCountsAsPrepare) => {
                Some(PbftWeakening::PrePrepareCountsAsPrepare)
            }
            Some(Weakening::VoteBeforeDurable) => Some(PbftWeakening::VoteBeforeDurable),
            _ => None,
        };
        c
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gst = self.network.gst.map_or(0, |g| g.at_ns);
        write!(
            f,
            "{} seed {} n={} GST {} ms Δ {} ms latency {} ms loss {:.0}% dup {:.0}% partitions {} rate {}/s",
            self.protocol.name(),
            self.seed,
            self.nodes,
            gst / MS,
            self.delta_ns / MS,
            self.network.latency_ns / MS,
            self.network.loss * 100.0,
            self.network.duplicate * 100.0,
            self.network.partitions.len(),
            self.tx_rate,
        )?;
        if self.protocol == ProtocolChoice::HotStuff {
            write!(f, "; {}-chain", self.chain.length())?;
        }
        for (node, fault) in &self.faults {
            match fault {
                NodeFault::Byzantine(b) => write!(f, "; node {node} {b}")?,
                NodeFault::Crash { at_ns, restart_ns: Some(r) } => {
                    write!(f, "; node {node} down {}–{} ms", at_ns / MS, r / MS)?
                }
                NodeFault::Crash { at_ns, restart_ns: None } => {
                    write!(f, "; node {node} down from {} ms", at_ns / MS)?
                }
            }
        }
        for (j, twin) in self.twins.iter().enumerate() {
            write!(f, "; node {twin} twinned (instance {})", self.nodes + j)?;
        }
        if let Some((node, honest)) = self.honest_restart() {
            let (down, up) = (honest.down_ns / MS, honest.up_ns / MS);
            let how = if honest.in_sync { " (crashing in a sync)" } else { "" };
            write!(f, "; honest node {node} down {down}–{up} ms{how}")?;
        }
        let how = match self.weakening {
            Some(Weakening::Amnesia) => "with the journal lost",
            Some(Weakening::VoteBeforeDurable) => "from the journal",
            _ if self.restarts.recover => "from the journal",
            _ => "with memory",
        };
        write!(f, "; restarts {how}, sync {} µs", self.restarts.sync_ns / 1_000)?;
        if let Some(w) = self.weakening {
            write!(f, "; weakened: {}", w.name())?;
        }
        Ok(())
    }
}
