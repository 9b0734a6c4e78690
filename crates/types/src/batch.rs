//! Batches of transactions, backed by one shared buffer.

use std::fmt;
use std::sync::Arc;

use agora_crypto::{Digest, SIGNATURE_BYTES, domain};
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{self, CodecError, MESSAGE_BYTES_MAX, varint_len};
use crate::transaction::{Transaction, TransactionWire};

/// The most transactions one batch may hold.
pub const BATCH_TXS_MAX: usize = 16_384;

/// The shortest possible encoded transaction: key and signature with their length bytes, a
/// one-byte nonce and an empty payload. Bounds how many transactions a buffer can claim to hold.
const TX_ENCODED_BYTES_MIN: usize =
    1 + agora_crypto::PUBLIC_KEY_BYTES + 1 + 1 + 1 + SIGNATURE_BYTES;

/// Why a batch could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// More than [`BATCH_TXS_MAX`] transactions.
    #[error("{count} transactions exceed the batch limit of {limit}")]
    TooMany {
        /// Transactions offered.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The encoding would exceed the message size limit.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// An ordered batch of transactions and its payload digest.
///
/// The batch keeps its canonical encoding in one [`Bytes`] buffer and every transaction's payload
/// is a slice of that buffer, so cloning a batch (to send it to every node, or to keep it in a
/// block) is one reference-count increment, and encoding it is a single copy of the buffer. The
/// digest, under `agora/batch/v1`, covers the whole encoding: every transaction, signatures
/// included.
#[derive(Clone)]
pub struct Batch(Arc<BatchInner>);

struct BatchInner {
    encoded: Bytes,
    transactions: Vec<Transaction>,
    digest: Digest,
}

impl Batch {
    /// A batch of `transactions`, in the given order.
    pub fn new(transactions: Vec<Transaction>) -> Result<Self, BatchError> {
        if transactions.len() > BATCH_TXS_MAX {
            return Err(BatchError::TooMany { count: transactions.len(), limit: BATCH_TXS_MAX });
        }
        let header = varint_len(transactions.len() as u64);
        let size = header + transactions.iter().map(Transaction::encoded_len).sum::<usize>();
        if size > MESSAGE_BYTES_MAX {
            return Err(CodecError::TooLarge { size, limit: MESSAGE_BYTES_MAX }.into());
        }
        let mut out = Vec::with_capacity(size);
        codec::encode_into(&transactions.len(), &mut out)?;
        for tx in &transactions {
            codec::encode_into(tx, &mut out)?;
        }
        debug_assert_eq!(out.len(), size);
        let encoded = Bytes::from(out);
        // Point every payload into the shared buffer, so the batch owns one allocation. A
        // transaction's encoding ends with its payload and then its signature (length byte and
        // 64 bytes).
        let mut end = header;
        let transactions = transactions
            .into_iter()
            .map(|tx| {
                end += tx.encoded_len();
                let payload_end = end - 1 - SIGNATURE_BYTES;
                let payload_start = payload_end - tx.payload().len();
                tx.with_shared_payload(encoded.slice(payload_start..payload_end))
            })
            .collect();
        Ok(Self::from_checked(encoded, transactions))
    }

    /// The empty batch.
    pub fn empty() -> Self {
        Self::new(Vec::new()).expect("the empty batch is within every limit")
    }

    /// Parses a batch from its canonical encoding, taking a share of `encoded` (no copy).
    pub fn from_encoded(encoded: Bytes) -> Result<Self, CodecError> {
        if encoded.len() > MESSAGE_BYTES_MAX {
            return Err(CodecError::TooLarge { size: encoded.len(), limit: MESSAGE_BYTES_MAX });
        }
        let (count, mut rest) = postcard::take_from_bytes::<u64>(&encoded)?;
        if encoded.len() - rest.len() != varint_len(count) {
            return Err(CodecError::NonCanonical);
        }
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if count > BATCH_TXS_MAX {
            return Err(CodecError::Malformed(format!(
                "batch claims {count} transactions, the limit is {BATCH_TXS_MAX}"
            )));
        }
        // Never reserve more than the input could hold.
        let mut transactions = Vec::with_capacity(count.min(rest.len() / TX_ENCODED_BYTES_MIN));
        for _ in 0..count {
            let (wire, next) = postcard::take_from_bytes::<TransactionWire<'_>>(rest)?;
            let consumed = rest.len() - next.len();
            let payload = encoded.slice_ref(wire.payload);
            let tx = Transaction::from_parts(wire.sender, wire.nonce, payload, wire.signature)
                .map_err(|e| CodecError::Malformed(e.to_string()))?;
            // Any longer encoding of the same fields used a non-minimal varint.
            if tx.encoded_len() != consumed {
                return Err(CodecError::NonCanonical);
            }
            transactions.push(tx);
            rest = next;
        }
        if !rest.is_empty() {
            return Err(CodecError::TrailingBytes(rest.len()));
        }
        Ok(Self::from_checked(encoded, transactions))
    }

    fn from_checked(encoded: Bytes, transactions: Vec<Transaction>) -> Self {
        let digest = domain::BATCH.hash(&encoded);
        Self(Arc::new(BatchInner { encoded, transactions, digest }))
    }

    /// The payload digest: what a block header commits to.
    pub fn digest(&self) -> Digest {
        self.0.digest
    }

    /// The transactions, in execution order.
    pub fn transactions(&self) -> &[Transaction] {
        &self.0.transactions
    }

    /// Number of transactions.
    pub fn len(&self) -> usize {
        self.0.transactions.len()
    }

    /// True when the batch holds no transaction.
    pub fn is_empty(&self) -> bool {
        self.0.transactions.is_empty()
    }

    /// The canonical encoding (shared, not copied).
    pub fn encoded(&self) -> &Bytes {
        &self.0.encoded
    }
}

impl PartialEq for Batch {
    fn eq(&self, other: &Self) -> bool {
        self.0.digest == other.0.digest
    }
}

impl Eq for Batch {}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("digest", &self.0.digest)
            .field("transactions", &self.len())
            .field("bytes", &self.0.encoded.len())
            .finish()
    }
}

impl Serialize for Batch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0.encoded)
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Encoded;
        impl serde::de::Visitor<'_> for Encoded {
            type Value = Batch;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an encoded batch")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Batch, E> {
                Batch::from_encoded(Bytes::copy_from_slice(v)).map_err(E::custom)
            }
        }
        deserializer.deserialize_bytes(Encoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_crypto::SecretKey;

    fn txs(n: usize) -> Vec<Transaction> {
        let key = SecretKey::from_seed(2, 0);
        (0..n)
            .map(|i| {
                Transaction::new_signed(&key, i as u64 * 100, Bytes::from(vec![i as u8; i % 50]))
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn payloads_share_the_batch_buffer() {
        let batch = Batch::new(txs(10)).unwrap();
        let buffer = batch.encoded().as_ptr_range();
        for tx in batch.transactions().iter().filter(|t| !t.payload().is_empty()) {
            assert!(buffer.contains(&tx.payload().as_ptr()), "payload copied out of the buffer");
        }
        let copy = batch.clone();
        assert_eq!(copy.encoded().as_ptr(), batch.encoded().as_ptr());
    }

    #[test]
    fn encoding_round_trips_through_bytes_and_codec() {
        for n in [0, 1, 7, 130] {
            let original = txs(n);
            let batch = Batch::new(original.clone()).unwrap();
            assert_eq!(batch.transactions(), &original[..]);
            // The batch encoding equals postcard's encoding of the transaction list.
            assert_eq!(&batch.encoded()[..], &codec::encode(&original).unwrap()[..]);
            let parsed = Batch::from_encoded(batch.encoded().clone()).unwrap();
            assert_eq!(parsed.transactions(), &original[..]);
            assert_eq!(parsed.digest(), batch.digest());
            let wire = codec::encode(&batch).unwrap();
            let decoded: Batch = codec::decode(&wire).unwrap();
            assert_eq!(decoded.transactions(), &original[..]);
        }
    }

    #[test]
    fn digest_covers_every_transaction_and_order() {
        let base = txs(5);
        let digest = Batch::new(base.clone()).unwrap().digest();
        let mut swapped = base.clone();
        swapped.swap(1, 2);
        assert_ne!(Batch::new(swapped).unwrap().digest(), digest);
        let mut fewer = base.clone();
        fewer.pop();
        assert_ne!(Batch::new(fewer).unwrap().digest(), digest);
        assert_ne!(Batch::empty().digest(), digest);
    }

    #[test]
    fn limits_and_bad_input() {
        let err = Batch::new(vec![txs(1)[0].clone(); BATCH_TXS_MAX + 1]).unwrap_err();
        assert_eq!(err, BatchError::TooMany { count: BATCH_TXS_MAX + 1, limit: BATCH_TXS_MAX });
        // A count larger than the limit, with no transactions behind it.
        let claim = codec::encode(&(BATCH_TXS_MAX as u64 + 1)).unwrap();
        assert!(matches!(Batch::from_encoded(claim), Err(CodecError::Malformed(_))));
        // A plausible count and nothing behind it: an error, and no large reservation.
        let claim = codec::encode(&1000u64).unwrap();
        assert!(matches!(Batch::from_encoded(claim), Err(CodecError::Malformed(_))));
        // Truncations of a valid batch are errors at every length.
        let good = Batch::new(txs(3)).unwrap();
        for cut in 0..good.encoded().len() {
            assert!(Batch::from_encoded(good.encoded().slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut trailing = good.encoded().to_vec();
        trailing.push(0);
        assert_eq!(Batch::from_encoded(Bytes::from(trailing)), Err(CodecError::TrailingBytes(1)));
        // An overlong count varint.
        let mut overlong = vec![0x83, 0x00];
        overlong.extend_from_slice(&good.encoded()[1..]);
        assert_eq!(Batch::from_encoded(Bytes::from(overlong)), Err(CodecError::NonCanonical));
    }
}
