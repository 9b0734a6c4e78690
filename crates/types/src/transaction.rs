//! Signed transactions.

use std::fmt;
use std::sync::OnceLock;

use agora_crypto::{
    Digest, DirectCheck, PUBLIC_KEY_BYTES, PublicKeyBytes, SIGNATURE_BYTES, SecretKey, Signature,
    SignatureCheck, SignatureError, domain,
};
use bytes::Bytes;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::codec::varint_len;

/// The largest transaction payload: 16 KiB. An order command is a few dozen bytes.
pub const TX_PAYLOAD_BYTES_MAX: usize = 16 * 1024;

/// Why a transaction was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// The payload is larger than [`TX_PAYLOAD_BYTES_MAX`].
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The signature is not the sender's over this transaction (or the sender is not a key).
    #[error("bad transaction signature: {0}")]
    BadSignature(#[from] SignatureError),
}

/// A signed envelope: `sender` asks for `payload` to be executed, `nonce` orders its requests.
///
/// Its identity is [`Transaction::id`], the digest of sender, nonce and payload under
/// `agora/tx/v1`; the sender signs that identity under `agora/tx-signature/v1`. The payload is
/// opaque here (the exchange puts an encoded order command in it) and shares its buffer: cloning
/// a transaction copies no payload bytes.
///
/// Construction checks the payload size but not the signature: a transaction decoded from the
/// network is *well-formed*, and [`Transaction::verify`] says whether it is *authentic*.
#[derive(Clone)]
pub struct Transaction {
    sender: PublicKeyBytes,
    nonce: u64,
    payload: Bytes,
    signature: Signature,
    /// Computed on first use: a decoded copy that is dropped unread (an echoed proposal the
    /// node already has) never pays for hashing it.
    id: OnceLock<Digest>,
}

/// Equal when every field is: the id is a function of them.
impl PartialEq for Transaction {
    fn eq(&self, other: &Self) -> bool {
        self.sender == other.sender
            && self.nonce == other.nonce
            && self.payload == other.payload
            && self.signature == other.signature
    }
}

impl Eq for Transaction {}

impl Transaction {
    /// Signs a new transaction with `key`.
    pub fn new_signed(
        key: &SecretKey,
        nonce: u64,
        payload: Bytes,
    ) -> Result<Self, TransactionError> {
        let sender = PublicKeyBytes::from(key.public_key());
        check_payload(&payload)?;
        let id = identity(&sender, nonce, &payload);
        let signature = key.sign(&domain::TX_SIGNATURE, id.as_bytes());
        Ok(Self { sender, nonce, payload, signature, id: OnceLock::from(id) })
    }

    /// Assembles a transaction from its parts, without verifying the signature.
    pub fn from_parts(
        sender: PublicKeyBytes,
        nonce: u64,
        payload: Bytes,
        signature: Signature,
    ) -> Result<Self, TransactionError> {
        check_payload(&payload)?;
        Ok(Self { sender, nonce, payload, signature, id: OnceLock::new() })
    }

    /// The identity digest (sender, nonce, payload). Two transactions with the same identity are
    /// the same request, whatever signature bytes they carry.
    pub fn id(&self) -> Digest {
        *self.id.get_or_init(|| identity(&self.sender, self.nonce, &self.payload))
    }

    /// Who signed it.
    pub fn sender(&self) -> &PublicKeyBytes {
        &self.sender
    }

    /// The sender's sequence number for this request.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// The opaque payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The sender's signature over [`Transaction::id`].
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Checks the signature: about 50 µs on one core, the dominant cost of a replica.
    pub fn verify(&self) -> Result<(), TransactionError> {
        self.verify_with(&mut DirectCheck)
    }

    /// [`Transaction::verify`] through `checker`.
    pub fn verify_with(&self, checker: &mut dyn SignatureCheck) -> Result<(), TransactionError> {
        self.sender
            .verify_with(checker, &domain::TX_SIGNATURE, self.id().as_bytes(), &self.signature)
            .map_err(TransactionError::BadSignature)
    }

    /// Length of the canonical encoding, computed without encoding.
    pub fn encoded_len(&self) -> usize {
        let len = self.payload.len();
        1 + PUBLIC_KEY_BYTES
            + varint_len(self.nonce)
            + varint_len(len as u64)
            + len
            + 1
            + SIGNATURE_BYTES
    }

    /// The same transaction with its payload replaced by `payload`, which must hold the same
    /// bytes (used to point payloads into a shared batch buffer).
    pub(crate) fn with_shared_payload(self, payload: Bytes) -> Self {
        debug_assert_eq!(payload, self.payload);
        Self { payload, ..self }
    }
}

fn check_payload(payload: &[u8]) -> Result<(), TransactionError> {
    if payload.len() > TX_PAYLOAD_BYTES_MAX {
        return Err(TransactionError::PayloadTooLarge {
            size: payload.len(),
            limit: TX_PAYLOAD_BYTES_MAX,
        });
    }
    Ok(())
}

fn identity(sender: &PublicKeyBytes, nonce: u64, payload: &[u8]) -> Digest {
    domain::TX
        .hasher()
        .update(sender.as_bytes())
        .update_u64(nonce)
        .update_u64(payload.len() as u64)
        .update(payload)
        .finalize()
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("id", &self.id())
            .field("sender", &self.sender)
            .field("nonce", &self.nonce)
            .field("payload_bytes", &self.payload.len())
            .finish()
    }
}

impl Serialize for Transaction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Transaction", 4)?;
        s.serialize_field("sender", &self.sender)?;
        s.serialize_field("nonce", &self.nonce)?;
        s.serialize_field("payload", &PayloadRef(&self.payload))?;
        s.serialize_field("signature", &self.signature)?;
        s.end()
    }
}

/// Serializes a payload as a byte string (not a sequence of numbers) in every format.
struct PayloadRef<'a>(&'a [u8]);

impl Serialize for PayloadRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// The decoded fields of a transaction, payload borrowed from the input.
#[derive(Deserialize)]
#[serde(rename = "Transaction")]
pub(crate) struct TransactionWire<'a> {
    pub(crate) sender: PublicKeyBytes,
    pub(crate) nonce: u64,
    #[serde(borrow)]
    pub(crate) payload: &'a [u8],
    pub(crate) signature: Signature,
}

impl<'de> Deserialize<'de> for Transaction {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = TransactionWire::deserialize(deserializer)?;
        Transaction::from_parts(
            wire.sender,
            wire.nonce,
            Bytes::copy_from_slice(wire.payload),
            wire.signature,
        )
        .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    fn tx(nonce: u64, payload: &'static [u8]) -> Transaction {
        Transaction::new_signed(&SecretKey::from_seed(1, 1), nonce, Bytes::from_static(payload))
            .unwrap()
    }

    #[test]
    fn signed_transactions_verify() {
        let t = tx(1, b"buy 1 ETH at 2000");
        assert_eq!(t.verify(), Ok(()));
        assert_eq!(t.nonce(), 1);
        assert_eq!(&t.payload()[..], b"buy 1 ETH at 2000");
    }

    #[test]
    fn identity_covers_sender_nonce_and_payload() {
        let base = tx(1, b"abc");
        assert_ne!(base.id(), tx(2, b"abc").id());
        assert_ne!(base.id(), tx(1, b"abd").id());
        let other =
            Transaction::new_signed(&SecretKey::from_seed(1, 2), 1, Bytes::from_static(b"abc"))
                .unwrap();
        assert_ne!(base.id(), other.id());
    }

    #[test]
    fn forged_parts_fail_verification() {
        let t = tx(1, b"abc");
        let other_key = SecretKey::from_seed(9, 9);
        // Payload changed after signing.
        let changed =
            Transaction::from_parts(*t.sender(), 1, Bytes::from_static(b"abd"), *t.signature())
                .unwrap();
        assert!(changed.verify().is_err());
        // Someone else's signature.
        let stolen = Transaction::from_parts(
            PublicKeyBytes::from(other_key.public_key()),
            1,
            t.payload().clone(),
            *t.signature(),
        )
        .unwrap();
        assert!(stolen.verify().is_err());
        // Not a key at all.
        let garbage = Transaction::from_parts(
            PublicKeyBytes::new([7; PUBLIC_KEY_BYTES]),
            1,
            t.payload().clone(),
            *t.signature(),
        )
        .unwrap();
        assert_eq!(garbage.verify(), Err(TransactionError::BadSignature(SignatureError::Invalid)));
    }

    #[test]
    fn payload_limit() {
        let key = SecretKey::from_seed(1, 1);
        let ok = Bytes::from(vec![0; TX_PAYLOAD_BYTES_MAX]);
        assert!(Transaction::new_signed(&key, 0, ok).is_ok());
        let big = Bytes::from(vec![0; TX_PAYLOAD_BYTES_MAX + 1]);
        assert_eq!(
            Transaction::new_signed(&key, 0, big).unwrap_err(),
            TransactionError::PayloadTooLarge {
                size: TX_PAYLOAD_BYTES_MAX + 1,
                limit: TX_PAYLOAD_BYTES_MAX
            }
        );
    }

    #[test]
    fn codec_round_trip_and_length() {
        for t in [tx(0, b""), tx(300, b"x"), tx(u64::MAX, &[5; 200])] {
            let bytes = codec::encode(&t).unwrap();
            assert_eq!(bytes.len(), t.encoded_len());
            let back: Transaction = codec::decode(&bytes).unwrap();
            assert_eq!(back, t);
            assert_eq!(back.id(), t.id());
            assert_eq!(back.verify(), Ok(()));
        }
    }
}
