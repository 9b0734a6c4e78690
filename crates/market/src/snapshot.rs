//! Snapshots of the replicated market: a replica restarts from its latest one and replays the
//! finalized blocks after it, and a replica far behind starts from a peer's whose digest is
//! certified.
//!
//! A snapshot holds the order book's canonical snapshot, the nonce windows, the height, the
//! execution order and, in canonical order, the final block still waiting for its successor.
//! Restoring checks what it decodes: the book's own consistency checks, then the state digest
//! recomputed from scratch against the one the caller expects (the store's, or a certified
//! one). A snapshot that passes both is the state, to the bit; anything else is an error,
//! never a panic and never a market that differs silently.

use std::collections::BTreeMap;

use agora_crypto::Digest;
use agora_orderbook::{AccountId, Exchange, Snapshot};
use agora_types::{Block, Height, codec};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{ExecutionOrder, MarketApp, MarketGenesis, Nonces};

/// The largest snapshot the market decodes: 1 GiB.
pub const SNAPSHOT_BYTES_MAX: usize = 1 << 30;

/// What a snapshot encodes.
#[derive(Serialize, Deserialize)]
struct Image {
    exchange: Snapshot,
    nonces: BTreeMap<AccountId, Nonces>,
    height: Height,
    order: ExecutionOrder,
    waiting: Option<Block>,
}

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarketSnapshotError {
    /// The bytes are not a market snapshot.
    #[error("the snapshot does not decode: {0}")]
    Undecodable(String),
    /// The order book in it is inconsistent.
    #[error("the snapshot's order book is inconsistent: {0}")]
    Book(String),
    /// It decodes, but its state is not the one expected.
    #[error("the snapshot's state digest is {found}, not the expected {expected}")]
    WrongDigest {
        /// The digest the caller expected.
        expected: Digest,
        /// The digest of the state the snapshot holds.
        found: Digest,
    },
}

impl MarketApp {
    /// The market's state as a snapshot: the order book's canonical snapshot, the nonce
    /// windows, the height, the execution order and, in canonical order, the final block still
    /// waiting for its successor. [`MarketApp::from_snapshot`] restores it.
    pub fn snapshot(&self) -> Bytes {
        let image = Image {
            exchange: self.exchange.snapshot(),
            nonces: self.nonces.clone(),
            height: self.height,
            order: self.order,
            waiting: self.waiting.clone(),
        };
        codec::encode_with_limit(&image, SNAPSHOT_BYTES_MAX).expect("a market snapshot encodes")
    }

    /// The market of `genesis` (its accounts), in the state `snapshot` holds, whose digest must
    /// be `expected` (the store's, or a certified one). The book's consistency checks run
    /// first, then the state digest is recomputed from scratch: a snapshot that passes both is
    /// the state to the bit, and anything else is an error, never a panic.
    pub fn from_snapshot(
        genesis: &MarketGenesis,
        snapshot: &[u8],
        expected: Digest,
    ) -> Result<Self, MarketSnapshotError> {
        let mut app = MarketApp::new(genesis);
        app.restore(snapshot, expected)?;
        Ok(app)
    }

    /// [`MarketApp::from_snapshot`] in place, for a market at genesis built as the replica
    /// builds it (its genesis, observer and all): its state becomes the snapshot's, or on an
    /// error stays as it was.
    pub fn restore(
        &mut self,
        snapshot: &[u8],
        expected: Digest,
    ) -> Result<(), MarketSnapshotError> {
        let image: Image = codec::decode_with_limit(snapshot, SNAPSHOT_BYTES_MAX)
            .map_err(|error| MarketSnapshotError::Undecodable(error.to_string()))?;
        let exchange = Exchange::from_snapshot(&image.exchange)
            .map_err(|error| MarketSnapshotError::Book(error.to_string()))?;
        let previous = (
            std::mem::replace(&mut self.exchange, exchange),
            std::mem::replace(&mut self.nonces, image.nonces),
        );
        // From scratch, not through the level cache: this is the check.
        let found = self.recompute_digest();
        if found != expected {
            (self.exchange, self.nonces) = previous;
            return Err(MarketSnapshotError::WrongDigest { expected, found });
        }
        self.order = image.order;
        self.height = image.height;
        self.waiting = image.waiting;
        self.level_digests = Default::default();
        self.digest = found;
        if let Some(observer) = &mut self.observer {
            observer.reset(self.height, &self.exchange, &self.nonces);
        }
        Ok(())
    }
}
