//! The seam between consensus and what it orders: an application receives final blocks in order.

use agora_crypto::{Digest, SignatureCheck, domain};
use agora_types::{Block, Height, codec};
use bytes::Bytes;

/// What an application reports after applying a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Transactions executed.
    pub executed: usize,
    /// Transactions refused (bad signature, replayed nonce, invalid content). A refused
    /// transaction changes nothing.
    pub rejected: usize,
    /// The state digest after the block: equal at every honest replica at equal heights.
    pub state_digest: Digest,
}

/// A replicated state machine, fed final blocks in log order, each exactly once.
pub trait Application {
    /// Applies `block`, verifying what it must with `checker`.
    fn apply(&mut self, block: &Block, checker: &mut dyn SignatureCheck) -> Applied;

    /// The current state digest.
    fn state_digest(&self) -> Digest;

    /// The height of the last block applied (0 before any).
    fn height(&self) -> Height;

    /// The application's whole state, encoded so that the application can be rebuilt from it
    /// (each application offers its own constructor for that), or `None` when it cannot be
    /// snapshotted. A replica stores one every K blocks, restarts from the newest and replays
    /// the blocks after it. The default is `None`: such an application replays from genesis.
    fn state_snapshot(&self) -> Option<Bytes> {
        None
    }

    /// Replaces the application's state with the one `snapshot` encodes (as
    /// [`Application::state_snapshot`] made it), if its state digest is `expected`; on an error
    /// nothing changes. Called on an application in its genesis state, built as the replica
    /// builds it (with its configuration and observers), so that a driver can restart any
    /// application from its store without knowing its type. The default refuses.
    fn restore_snapshot(&mut self, snapshot: &[u8], expected: Digest) -> Result<(), String> {
        let _ = (snapshot, expected);
        Err("this application cannot restore a snapshot".to_owned())
    }
}

/// A boxed application is one: drivers that mix applications hold `Box<dyn Application>`,
/// and those that know theirs hold it by type.
impl<T: Application + ?Sized> Application for Box<T> {
    fn apply(&mut self, block: &Block, checker: &mut dyn SignatureCheck) -> Applied {
        (**self).apply(block, checker)
    }

    fn state_digest(&self) -> Digest {
        (**self).state_digest()
    }

    fn height(&self) -> Height {
        (**self).height()
    }

    fn state_snapshot(&self) -> Option<Bytes> {
        (**self).state_snapshot()
    }

    fn restore_snapshot(&mut self, snapshot: &[u8], expected: Digest) -> Result<(), String> {
        (**self).restore_snapshot(snapshot, expected)
    }
}

/// The simplest application: it verifies every transaction's signature and folds the ids of the
/// valid ones into a running digest, so two replicas agree on the digest exactly when they
/// executed the same transactions in the same order. Used by tests and by protocol benchmarks
/// that measure consensus without a market.
#[derive(Debug, Clone, Default)]
pub struct TxLog {
    digest: Digest,
    height: Height,
    executed: u64,
    verify_signatures: bool,
}

impl TxLog {
    /// An empty log. With `verify_signatures`, transactions whose signature fails are rejected.
    pub fn new(verify_signatures: bool) -> Self {
        Self { verify_signatures, ..Self::default() }
    }

    /// Transactions executed so far.
    pub fn executed(&self) -> u64 {
        self.executed
    }

    /// The log a [`Application::state_snapshot`] of it encoded, if `bytes` is one and its
    /// digest is `expected`.
    pub fn from_snapshot(bytes: &[u8], expected: Digest) -> Option<Self> {
        let (digest, height, executed, verify_signatures) =
            codec::decode_with_limit::<([u8; 32], u64, u64, bool)>(bytes, 64).ok()?;
        let log = Self {
            digest: Digest::from_bytes(digest),
            height: Height(height),
            executed,
            verify_signatures,
        };
        (log.digest == expected).then_some(log)
    }
}

impl Application for TxLog {
    fn apply(&mut self, block: &Block, checker: &mut dyn SignatureCheck) -> Applied {
        let mut executed = 0;
        let mut rejected = 0;
        let mut h = domain::STATE.hasher();
        h.update_digest(&self.digest);
        for tx in block.batch().transactions() {
            if self.verify_signatures && tx.verify_with(checker).is_err() {
                rejected += 1;
                continue;
            }
            h.update_digest(&tx.id());
            executed += 1;
        }
        self.digest = h.finalize();
        self.height = block.height();
        self.executed += executed as u64;
        Applied { executed, rejected, state_digest: self.digest }
    }

    fn state_digest(&self) -> Digest {
        self.digest
    }

    fn height(&self) -> Height {
        self.height
    }

    fn state_snapshot(&self) -> Option<Bytes> {
        let state = (*self.digest.as_bytes(), self.height.0, self.executed, self.verify_signatures);
        Some(codec::encode_with_limit(&state, 64).expect("four fixed-size fields encode"))
    }

    fn restore_snapshot(&mut self, snapshot: &[u8], expected: Digest) -> Result<(), String> {
        *self = Self::from_snapshot(snapshot, expected)
            .ok_or_else(|| "not a snapshot of the log with that digest".to_owned())?;
        Ok(())
    }
}
