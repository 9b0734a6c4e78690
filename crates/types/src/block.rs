//! Blocks: a header that commits to a batch.

use std::fmt;

use agora_crypto::{Digest, domain};
use serde::{Deserialize, Deserializer, Serialize};

use crate::batch::Batch;
use crate::codec;
use crate::ids::{Height, NodeId, Round};

/// What a block says about itself. Its digest is the block's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockHeader {
    /// The digest of the block this one extends ([`Digest::ZERO`] for genesis).
    pub parent: Digest,
    /// The epoch (Streamlet) or view (PBFT) in which the block was proposed.
    pub round: Round,
    /// Distance from genesis; for PBFT, the sequence number.
    pub height: Height,
    /// The node that proposed it.
    pub proposer: NodeId,
    /// The digest of the batch ([`Batch::digest`]).
    pub payload: Digest,
    /// Number of transactions in the batch, so a header alone tells the block's size.
    pub tx_count: u32,
    /// When the proposer made it, in nanoseconds of the driver's clock (simulated or real).
    pub created_at_ns: u64,
}

impl BlockHeader {
    /// The block digest: the header's canonical encoding hashed under `agora/block/v1`. Because
    /// the header holds the payload digest, changing any transaction changes the block digest.
    pub fn digest(&self) -> Digest {
        // A header encodes in at most 128 bytes (three 33-byte digests would not fit more).
        let mut buf = [0u8; 128];
        let bytes =
            postcard::to_slice(self, &mut buf).expect("a block header always fits in 128 bytes");
        domain::BLOCK.hash(bytes)
    }
}

/// Why a decoded block was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The header's payload digest is not the batch's.
    #[error("payload digest {claimed} does not match the batch ({actual})")]
    PayloadMismatch {
        /// What the header says.
        claimed: Digest,
        /// What the batch hashes to.
        actual: Digest,
    },
    /// The header's transaction count is not the batch's.
    #[error("header says {claimed} transactions, the batch has {actual}")]
    CountMismatch {
        /// What the header says.
        claimed: u32,
        /// What the batch holds.
        actual: usize,
    },
}

/// A header and the batch it commits to. Cloning shares the batch.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    header: BlockHeader,
    batch: Batch,
    #[serde(skip)]
    digest: Digest,
}

impl Block {
    /// A block proposed by `proposer` in `round` at `height`, extending `parent` with `batch`.
    /// The header's payload digest and count are taken from the batch.
    pub fn new(
        parent: Digest,
        round: Round,
        height: Height,
        proposer: NodeId,
        created_at_ns: u64,
        batch: Batch,
    ) -> Self {
        let header = BlockHeader {
            parent,
            round,
            height,
            proposer,
            payload: batch.digest(),
            tx_count: u32::try_from(batch.len()).expect("batches are far smaller than u32::MAX"),
            created_at_ns,
        };
        Self { digest: header.digest(), header, batch }
    }

    /// The genesis block: height 0, round 0, no parent, no transactions. Every node starts from
    /// the same one.
    pub fn genesis() -> Self {
        Self::new(Digest::ZERO, Round(0), Height(0), NodeId(0), 0, Batch::empty())
    }

    /// Joins a decoded header and batch, checking that the header commits to the batch.
    pub fn from_parts(header: BlockHeader, batch: Batch) -> Result<Self, BlockError> {
        if header.payload != batch.digest() {
            return Err(BlockError::PayloadMismatch {
                claimed: header.payload,
                actual: batch.digest(),
            });
        }
        if usize::try_from(header.tx_count).ok() != Some(batch.len()) {
            return Err(BlockError::CountMismatch {
                claimed: header.tx_count,
                actual: batch.len(),
            });
        }
        Ok(Self { digest: header.digest(), header, batch })
    }

    /// The block's identity ([`BlockHeader::digest`], cached).
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The header.
    pub fn header(&self) -> &BlockHeader {
        &self.header
    }

    /// The transactions.
    pub fn batch(&self) -> &Batch {
        &self.batch
    }

    /// The parent's digest.
    pub fn parent(&self) -> Digest {
        self.header.parent
    }

    /// The round it was proposed in.
    pub fn round(&self) -> Round {
        self.header.round
    }

    /// Its height.
    pub fn height(&self) -> Height {
        self.header.height
    }

    /// Its proposer.
    pub fn proposer(&self) -> NodeId {
        self.header.proposer
    }

    /// Length of the canonical encoding.
    pub fn encoded_len(&self) -> usize {
        codec::encoded_len(self)
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("digest", &self.digest)
            .field("parent", &self.header.parent)
            .field("round", &self.header.round)
            .field("height", &self.header.height)
            .field("proposer", &self.header.proposer)
            .field("transactions", &self.batch.len())
            .finish()
    }
}

impl<'de> Deserialize<'de> for Block {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename = "Block")]
        struct Wire {
            header: BlockHeader,
            batch: Batch,
        }
        let wire = Wire::deserialize(deserializer)?;
        Block::from_parts(wire.header, wire.batch).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transaction;
    use agora_crypto::SecretKey;
    use bytes::Bytes;

    fn batch(payloads: &[&'static [u8]]) -> Batch {
        let key = SecretKey::from_seed(3, 0);
        Batch::new(
            payloads
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    Transaction::new_signed(&key, i as u64, Bytes::from_static(p)).unwrap()
                })
                .collect(),
        )
        .unwrap()
    }

    fn block(b: Batch) -> Block {
        Block::new(Block::genesis().digest(), Round(1), Height(1), NodeId(2), 1_000, b)
    }

    #[test]
    fn header_commits_to_every_transaction() {
        let a = block(batch(&[b"one", b"two"]));
        assert_ne!(a.digest(), block(batch(&[b"one", b"twp"])).digest());
        assert_ne!(a.digest(), block(batch(&[b"two", b"one"])).digest());
        assert_ne!(a.digest(), block(batch(&[b"one"])).digest());
        assert_eq!(a.digest(), block(batch(&[b"one", b"two"])).digest());
    }

    #[test]
    fn every_header_field_is_in_the_digest() {
        let base = block(batch(&[b"x"]));
        let h = *base.header();
        let variants = [
            BlockHeader { parent: Digest::ZERO, ..h },
            BlockHeader { round: Round(2), ..h },
            BlockHeader { height: Height(2), ..h },
            BlockHeader { proposer: NodeId(3), ..h },
            BlockHeader { payload: Digest::ZERO, ..h },
            BlockHeader { tx_count: 2, ..h },
            BlockHeader { created_at_ns: 1_001, ..h },
        ];
        for v in variants {
            assert_ne!(v.digest(), base.digest(), "{v:?}");
        }
    }

    #[test]
    fn decoding_checks_the_payload() {
        let b = block(batch(&[b"x", b"y"]));
        let bytes = codec::encode(&b).unwrap();
        assert_eq!(bytes.len(), b.encoded_len());
        let back: Block = codec::decode(&bytes).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.digest(), b.digest());

        let other = batch(&[b"x", b"z"]);
        assert!(matches!(
            Block::from_parts(*b.header(), other.clone()),
            Err(BlockError::PayloadMismatch { .. })
        ));
        let lying = BlockHeader { payload: other.digest(), ..*b.header() };
        let swapped = codec::encode(&(lying, other.clone())).unwrap();
        assert!(codec::decode::<Block>(&swapped).is_ok(), "a consistent header and batch decode");
        let inconsistent = codec::encode(&(*b.header(), other)).unwrap();
        assert!(matches!(
            codec::decode::<Block>(&inconsistent),
            Err(codec::CodecError::Malformed(_))
        ));
        let bad_count = BlockHeader { tx_count: 5, ..*b.header() };
        assert_eq!(
            Block::from_parts(bad_count, b.batch().clone()),
            Err(BlockError::CountMismatch { claimed: 5, actual: 2 })
        );
    }

    #[test]
    fn genesis_is_fixed() {
        assert_eq!(Block::genesis().digest(), Block::genesis().digest());
        assert_eq!(Block::genesis().height(), Height(0));
        assert!(Block::genesis().batch().is_empty());
    }
}
