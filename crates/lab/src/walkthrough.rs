//! One block's life through agora's foundation, end to end, with sizes and timings: a committee
//! is formed, clients sign orders, a proposer batches them into a block, the block is encoded for
//! the wire and decoded by a replica, which checks every signature; the committee votes and a
//! certificate is formed and checked.

use std::time::{Duration, Instant};

use agora_crypto::Digest;
use agora_types::{
    Batch, BatchError, Block, Certificate, CertificateError, Committee, CommitteeError, Height,
    NodeId, Phase, Round, SecretKey, Statement, Transaction, TransactionError, Vote, codec,
};
use bytes::Bytes;
use serde::Serialize;

/// Mixed into the seed for client keys, so clients never share a key with a node.
const CLIENT_SEED: u64 = 0x636c_6965_6e74; // "client"

/// What the walkthrough should build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkthroughConfig {
    /// Seed for every key.
    pub seed: u64,
    /// Committee size.
    pub nodes: usize,
    /// Transactions in the block.
    pub txs: usize,
    /// Distinct client accounts signing them.
    pub clients: usize,
}

impl Default for WalkthroughConfig {
    fn default() -> Self {
        Self { seed: 1, nodes: 4, txs: 1_000, clients: 100 }
    }
}

/// Why the walkthrough stopped.
#[derive(Debug, thiserror::Error)]
pub enum WalkthroughError {
    /// The committee could not be formed.
    #[error(transparent)]
    Committee(#[from] CommitteeError),
    /// A transaction could not be built or did not verify.
    #[error(transparent)]
    Transaction(#[from] TransactionError),
    /// The batch could not be built.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Encoding or decoding failed.
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
    /// The certificate did not verify.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// The configuration asks for something impossible.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
}

/// What happened, with wall-clock timings of each step on this machine.
#[derive(Debug, Clone, Serialize)]
pub struct WalkthroughReport {
    /// Committee size.
    pub nodes: usize,
    /// Byzantine members tolerated.
    pub f: usize,
    /// Transactions in the block.
    pub txs: usize,
    /// The block's digest.
    pub block_digest: Digest,
    /// The block's encoded size.
    pub block_bytes: usize,
    /// Every signature in the decoded block verified.
    pub all_signatures_valid: bool,
    /// Signers in the certificate.
    pub certificate_signers: usize,
    /// Encoded size of the certificate.
    pub certificate_bytes: usize,
    /// Step timings, in the order they ran.
    pub timings: Vec<StepTiming>,
}

/// One step's wall-clock time.
#[derive(Debug, Clone, Serialize)]
pub struct StepTiming {
    /// What was done.
    pub step: &'static str,
    /// How many items it processed.
    pub items: usize,
    /// Total time in microseconds.
    pub total_us: f64,
}

impl StepTiming {
    /// Microseconds per item.
    pub fn per_item_us(&self) -> f64 {
        self.total_us / self.items.max(1) as f64
    }
}

fn timed<T>(
    timings: &mut Vec<StepTiming>,
    step: &'static str,
    items: usize,
    f: impl FnOnce() -> T,
) -> T {
    let start = Instant::now();
    let out = f();
    timings.push(StepTiming { step, items, total_us: micros(start.elapsed()) });
    out
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The most transactions, and clients, a walkthrough takes.
pub const WALKTHROUGH_MAX: usize = 16_384;

/// Runs the walkthrough.
pub fn run(config: WalkthroughConfig) -> Result<WalkthroughReport, WalkthroughError> {
    if config.clients == 0 {
        return Err(WalkthroughError::Config("at least one client is needed"));
    }
    if config.clients > WALKTHROUGH_MAX || config.txs == 0 || config.txs > WALKTHROUGH_MAX {
        return Err(WalkthroughError::Config("transactions and clients are 1 to 16384"));
    }
    let mut timings = Vec::new();
    let (committee, node_keys) = Committee::deterministic(config.seed, config.nodes)?;
    // Client keys come from another seed stream than the nodes'.
    // Transaction i is signed by client i mod clients: only the first `txs` clients sign.
    let client_keys: Vec<SecretKey> = (0..config.clients.min(config.txs) as u64)
        .map(|i| SecretKey::from_seed(config.seed ^ CLIENT_SEED, i))
        .collect();

    let txs = timed(&mut timings, "sign transactions", config.txs, || {
        (0..config.txs)
            .map(|i| {
                let side = if i % 2 == 0 { "buy" } else { "sell" };
                let order = format!("{side} {} ETH-USD @ {}", 1 + i % 7, 2_000 + i % 13);
                Transaction::new_signed(
                    &client_keys[i % config.clients],
                    (i / config.clients) as u64,
                    Bytes::from(order),
                )
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let batch = timed(&mut timings, "build batch", config.txs, || Batch::new(txs))?;
    let proposer = NodeId(1 % config.nodes as u16);
    let block = timed(&mut timings, "hash block", 1, || {
        Block::new(Block::genesis().digest(), Round(1), Height(1), proposer, 0, batch)
    });
    let wire = timed(&mut timings, "encode block", 1, || codec::encode(&block))?;
    let received: Block = timed(&mut timings, "decode block", 1, || codec::decode(&wire))?;
    let verified = timed(&mut timings, "verify signatures", received.batch().len(), || {
        received.batch().transactions().iter().try_for_each(Transaction::verify)
    });

    let statement = Statement {
        phase: Phase::Vote,
        round: Round(1),
        height: Height(1),
        value: received.digest(),
    };
    let quorum = committee.byzantine_quorum();
    let votes: Vec<Vote> = timed(&mut timings, "sign votes", quorum, || {
        committee
            .members()
            .take(quorum)
            .map(|n| Vote::sign(statement, n, &node_keys[n.index()]))
            .collect()
    });
    let certificate = Certificate::new(statement, votes.iter().map(|v| (v.voter, v.signature)));
    timed(&mut timings, "verify certificate", quorum, || {
        certificate.verify_for(&committee, quorum, &statement)
    })?;

    Ok(WalkthroughReport {
        nodes: committee.n(),
        f: committee.f(),
        txs: received.batch().len(),
        block_digest: received.digest(),
        block_bytes: wire.len(),
        all_signatures_valid: verified.is_ok(),
        certificate_signers: certificate.signers().len(),
        certificate_bytes: codec::encoded_len(&certificate),
        timings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walkthrough_builds_a_verified_certified_block() {
        let report =
            run(WalkthroughConfig { txs: 50, clients: 7, ..WalkthroughConfig::default() }).unwrap();
        assert_eq!(report.nodes, 4);
        assert_eq!(report.f, 1);
        assert_eq!(report.txs, 50);
        assert!(report.all_signatures_valid);
        assert_eq!(report.certificate_signers, 3);
        assert!(report.block_bytes > 50 * 100, "each transaction is over 100 bytes encoded");
        assert_eq!(report.timings.len(), 8);
    }

    #[test]
    fn same_seed_same_block() {
        let config = WalkthroughConfig { txs: 10, ..WalkthroughConfig::default() };
        assert_eq!(run(config).unwrap().block_digest, run(config).unwrap().block_digest);
        let other = WalkthroughConfig { seed: 2, ..config };
        assert_ne!(run(config).unwrap().block_digest, run(other).unwrap().block_digest);
    }

    #[test]
    fn bad_configuration_is_an_error() {
        assert!(matches!(
            run(WalkthroughConfig { clients: 0, ..WalkthroughConfig::default() }),
            Err(WalkthroughError::Config(_))
        ));
        assert!(matches!(
            run(WalkthroughConfig { nodes: 0, ..WalkthroughConfig::default() }),
            Err(WalkthroughError::Committee(_))
        ));
        // A client count that would ask for a terabyte of keys is refused, not tried.
        assert!(matches!(
            run(WalkthroughConfig { clients: u32::MAX as usize, ..WalkthroughConfig::default() }),
            Err(WalkthroughError::Config(_))
        ));
    }
}
