//! Every consensus engine of agora behind one configuration type and one factory.
//!
//! A driver that lets its user pick the protocol (the simulator's front end, the swarm, the
//! benchmarks, a node reading its config file) holds an [`EngineConfig`] and hands
//! [`with_engine`] what it wants done with the engine. That is the only `match` on the
//! protocol that builds engines: adding a protocol is one more variant here and one more
//! [`Engine`] implementation, and every driver runs it.
//!
//! ```
//! use agora_engines::{Engine, EngineConfig, WithEngine, with_engine};
//! use agora_streamlet::StreamletConfig;
//! use agora_types::{Committee, NodeId, SecretKey};
//!
//! /// Builds a committee's engines and says what each calls a round.
//! struct RoundName;
//!
//! impl WithEngine for RoundName {
//!     type Output = &'static str;
//!     fn run<P: Engine>(self, engine: impl Fn(NodeId, &Committee, &SecretKey) -> P + Copy + 'static) -> Self::Output {
//!         let (committee, keys) = Committee::deterministic(1, 4).unwrap();
//!         let _replicas: Vec<P> = committee.members().map(|me| engine(me, &committee, &keys[me.index()])).collect();
//!         P::PROTOCOL.round_name()
//!     }
//! }
//!
//! let config = EngineConfig::Streamlet(StreamletConfig::new(50_000_000));
//! assert_eq!(with_engine(config, RoundName).unwrap(), "epoch");
//! ```

pub use agora_consensus::ConfigError;
use agora_consensus::{ChainView, Equivocation, Protocol, Tamper};
use agora_hotstuff::{HotStuff, HotStuffConfig};
use agora_pbft::{Pbft, PbftConfig};
use agora_simplex::{Simplex, SimplexConfig};
use agora_streamlet::{Streamlet, StreamletConfig};
use agora_types::{Committee, NodeId, SecretKey};

/// Which protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ProtocolChoice {
    /// Streamlet (Chan & Shi, AFT 2020).
    Streamlet,
    /// PBFT (Castro & Liskov, OSDI 1999).
    Pbft,
    /// Simplex (Chan & Pass, TCC 2023).
    Simplex,
    /// Chained HotStuff (Yin et al., PODC 2019), or its two-chain variant (Jolteon,
    /// HotStuff-2), as its configuration says.
    #[cfg_attr(feature = "clap", value(name = "hotstuff"))]
    HotStuff,
}

impl ProtocolChoice {
    /// Every protocol, in the order reports list them.
    pub const ALL: [ProtocolChoice; 4] = [
        ProtocolChoice::Streamlet,
        ProtocolChoice::Pbft,
        ProtocolChoice::Simplex,
        ProtocolChoice::HotStuff,
    ];

    /// The protocol's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            ProtocolChoice::Streamlet => "streamlet",
            ProtocolChoice::Pbft => "pbft",
            ProtocolChoice::Simplex => "simplex",
            ProtocolChoice::HotStuff => "hotstuff",
        }
    }

    /// What the protocol calls a round.
    pub fn round_name(self) -> &'static str {
        match self {
            ProtocolChoice::Streamlet => "epoch",
            ProtocolChoice::Pbft => "view",
            ProtocolChoice::Simplex => "iteration",
            ProtocolChoice::HotStuff => "view",
        }
    }
}

/// A protocol with its configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EngineConfig {
    /// Streamlet.
    Streamlet(StreamletConfig),
    /// PBFT.
    Pbft(PbftConfig),
    /// Simplex.
    Simplex(SimplexConfig),
    /// HotStuff, three- or two-chain.
    HotStuff(HotStuffConfig),
}

impl EngineConfig {
    /// The protocol it configures.
    pub fn protocol(&self) -> ProtocolChoice {
        match self {
            EngineConfig::Streamlet(_) => ProtocolChoice::Streamlet,
            EngineConfig::Pbft(_) => ProtocolChoice::Pbft,
            EngineConfig::Simplex(_) => ProtocolChoice::Simplex,
            EngineConfig::HotStuff(_) => ProtocolChoice::HotStuff,
        }
    }

    /// Checks the protocol's configuration: the first bad setting, by field and value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            EngineConfig::Streamlet(c) => c.validate(),
            EngineConfig::Pbft(c) => c.validate(),
            EngineConfig::Simplex(c) => c.validate(),
            EngineConfig::HotStuff(c) => c.validate(),
        }
    }

    /// Warnings about a configuration that is valid but cannot make progress on a network whose
    /// messages take up to `delay_ns` one way (today: Streamlet with Δ below that delay).
    pub fn warnings(&self, delay_ns: u64) -> Vec<String> {
        match self {
            EngineConfig::Streamlet(c) => c.synchrony_warning(delay_ns).into_iter().collect(),
            EngineConfig::Pbft(_) | EngineConfig::Simplex(_) | EngineConfig::HotStuff(_) => {
                Vec::new()
            }
        }
    }
}

/// What every driver may ask of any engine, beyond the [`Protocol`] seam: its block tree for
/// pictures, adversaries that can tamper with its messages, threads to run on, and the few
/// measures that only some protocols have.
pub trait Engine:
    Protocol<Message: Tamper + Send, Timer: Send> + ChainView + Send + 'static
{
    /// Which protocol this is.
    const PROTOCOL: ProtocolChoice;

    /// The view this replica is in, for protocols that number views (PBFT); `None` otherwise.
    fn view_number(&self) -> Option<u64> {
        None
    }

    /// Submission-to-reply latencies of the client transactions this replica saw final, for
    /// protocols that reply to clients (PBFT); `None` otherwise.
    fn client_latencies_ns(&self) -> Option<&[u64]> {
        None
    }

    /// Finalizations the engine refused because they conflicted with its finalized log: two
    /// chains met the finality rule, which only more than f Byzantine members can cause. An
    /// engine whose log cannot fork without the conflict reaching it answers 0.
    fn refused_conflicting_finality(&self) -> u64 {
        0
    }

    /// Every pair of conflicting votes of one member this replica saw (the first the engine
    /// keeps). A pair signed by an honest member is a double vote: a correct engine with a
    /// durable journal never casts one, even across crashes.
    fn equivocations(&self) -> Vec<Equivocation> {
        Vec::new()
    }
}

impl Engine for Streamlet {
    const PROTOCOL: ProtocolChoice = ProtocolChoice::Streamlet;

    fn refused_conflicting_finality(&self) -> u64 {
        self.stats().conflicting_finality
    }

    fn equivocations(&self) -> Vec<Equivocation> {
        self.equivocation_evidence().to_vec()
    }
}

impl Engine for Pbft {
    const PROTOCOL: ProtocolChoice = ProtocolChoice::Pbft;

    fn view_number(&self) -> Option<u64> {
        Some(self.view().0)
    }

    fn client_latencies_ns(&self) -> Option<&[u64]> {
        Some(Pbft::client_latencies_ns(self))
    }

    fn equivocations(&self) -> Vec<Equivocation> {
        self.equivocation_evidence().cloned().collect()
    }
}

impl Engine for Simplex {
    const PROTOCOL: ProtocolChoice = ProtocolChoice::Simplex;

    fn refused_conflicting_finality(&self) -> u64 {
        self.stats().conflicting_finality
    }

    fn equivocations(&self) -> Vec<Equivocation> {
        self.equivocation_evidence().to_vec()
    }
}

impl Engine for HotStuff {
    const PROTOCOL: ProtocolChoice = ProtocolChoice::HotStuff;

    fn refused_conflicting_finality(&self) -> u64 {
        self.stats().conflicting_finality
    }

    fn equivocations(&self) -> Vec<Equivocation> {
        self.equivocation_evidence().to_vec()
    }
}

/// What a driver does with an engine whose protocol is known only at run time.
pub trait WithEngine {
    /// What it gives back.
    type Output;

    /// Runs with `engine(me, committee, key)`, which builds member `me`'s engine (as often as
    /// a driver needs: a restarted node gets a fresh one).
    fn run<P: Engine>(
        self,
        engine: impl Fn(NodeId, &Committee, &SecretKey) -> P + Copy + 'static,
    ) -> Self::Output;
}

/// Hands `job` the factory of the engine `config` names: the one place that builds engines.
///
/// The configuration is checked first ([`EngineConfig::validate`]), so a bad value is an error
/// here, before any engine exists. The factory then builds an engine for every member of the
/// committee it is given; asking it for a node outside the committee is a driver bug and panics.
pub fn with_engine<W: WithEngine>(config: EngineConfig, job: W) -> Result<W::Output, ConfigError> {
    const MEMBER: &str = "the configuration was validated, and drivers build members only";
    config.validate()?;
    Ok(match config {
        EngineConfig::Streamlet(c) => job.run(move |me, committee, key| {
            Streamlet::new(c, committee.clone(), me, key.clone()).expect(MEMBER)
        }),
        EngineConfig::Pbft(c) => job.run(move |me, committee, key| {
            Pbft::new(c, committee.clone(), me, key.clone()).expect(MEMBER)
        }),
        EngineConfig::Simplex(c) => job.run(move |me, committee, key| {
            Simplex::new(c, committee.clone(), me, key.clone()).expect(MEMBER)
        }),
        EngineConfig::HotStuff(c) => job.run(move |me, committee, key| {
            HotStuff::new(c, committee.clone(), me, key.clone()).expect(MEMBER)
        }),
    })
}
