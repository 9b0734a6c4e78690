//! The values agora's consensus engines agree on, and the one format they travel in.
//!
//! - Identifiers with explicit widths: [`NodeId`], [`Epoch`], [`View`], [`Round`], [`Height`],
//!   [`SeqNo`], [`AccountId`].
//! - [`Transaction`]: a signed envelope around an opaque payload; its digest is its identity.
//! - [`Batch`]: transactions in one shared [`bytes::Bytes`] buffer with a payload digest.
//! - [`Block`]: a [`BlockHeader`] that commits to a batch; its digest is its identity.
//! - [`Vote`] on a [`Statement`], and [`Certificate`]: a quorum of distinct signers.
//! - [`Committee`]: members, keys and the quorum sizes each protocol needs.
//! - [`codec`]: the canonical binary format (postcard) behind a size limit.
//!
//! Everything decoded from bytes is checked as it is decoded (sizes, canonical form, that a
//! header commits to its batch); signatures are checked by the explicit `verify` methods, so
//! that a caller decides when to spend the time.
//!
//! ```
//! use agora_types::{codec, Batch, Block, Committee, Height, NodeId, Round, Transaction};
//! // `bytes` comes with this crate: no second dependency line.
//! use agora_types::bytes::Bytes;
//!
//! let (committee, secrets) = Committee::deterministic(1, 4).unwrap();
//! let tx = Transaction::new_signed(&secrets[0], 0, Bytes::from_static(b"order")).unwrap();
//! let batch = Batch::new(vec![tx]).unwrap();
//! let block = Block::new(Block::genesis().digest(), Round(1), Height(1), NodeId(1), 0, batch);
//!
//! let bytes = codec::encode(&block).unwrap();
//! let decoded: Block = codec::decode(&bytes).unwrap();
//! assert_eq!(decoded.digest(), block.digest());
//! assert!(decoded.batch().transactions()[0].verify().is_ok());
//! assert_eq!(committee.byzantine_quorum(), 3);
//! ```

mod batch;
mod block;
pub mod codec;
mod committee;
mod ids;
mod transaction;
mod vote;

pub use agora_crypto::{Digest, PublicKey, PublicKeyBytes, SecretKey, Signature};
pub use batch::{BATCH_TXS_MAX, Batch, BatchError};
pub use block::{Block, BlockError, BlockHeader};
/// The `bytes` crate, whose [`Bytes`](bytes::Bytes) payloads and batches are built from, so
/// that a user of this crate needs no second dependency line to call
/// [`Transaction::new_signed`].
pub use bytes;
pub use committee::{COMMITTEE_SIZE_MAX, Committee, CommitteeError};
pub use ids::{AccountId, Epoch, Height, NodeId, Round, SeqNo, View};
pub use transaction::{TX_PAYLOAD_BYTES_MAX, Transaction, TransactionError};
pub use vote::{Certificate, CertificateError, Phase, Statement, Vote, VoteError};
