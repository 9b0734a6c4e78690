//! Keys and signatures: ECDSA over secp256k1 with RFC 6979 nonces, over domain-tagged digests.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use k256::ecdsa::{Signature as EcdsaSignature, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{Domain, domain};
use crate::hex;

/// Length of an encoded public key: a compressed SEC1 point.
pub const PUBLIC_KEY_BYTES: usize = 33;
/// Length of an encoded signature: the scalars `r` and `s`, 32 bytes each, big-endian.
pub const SIGNATURE_BYTES: usize = 64;

/// Why bytes are not a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a compressed point on secp256k1 (wrong length, wrong prefix, or not on the curve).
    #[error("malformed public key: not a compressed secp256k1 point")]
    MalformedPublicKey,
    /// Not a scalar in `1..n`.
    #[error("malformed secret key: not a scalar in 1..n")]
    MalformedSecretKey,
}

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The bytes are not a canonical signature: wrong length, a zero or out-of-range scalar, or a
    /// high `s` (every signature has exactly one accepted encoding, so none can be re-encoded
    /// into a second valid one).
    #[error("malformed signature")]
    Malformed,
    /// Well-formed, but not a signature by this key over this domain and message.
    #[error("signature does not verify")]
    Invalid,
}

/// How signatures get checked. Every typed `verify` in agora goes through one of these, so that a
/// driver decides how verification is done: [`DirectCheck`] runs k256 every time. A simulator
/// can memoize results across its nodes (a verification is a pure function of its inputs) while
/// still charging each node simulated CPU time for it.
pub trait SignatureCheck {
    /// Checks that `signature` is `key`'s over `message` under `domain`.
    fn check(
        &mut self,
        key: &PublicKey,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError>;

    /// [`SignatureCheck::check`] for a key that has not been parsed yet (a transaction's
    /// sender). The default parses it (a point decompression, a few µs) and checks; a checker
    /// that already knows the verdict (a memo, a cache of signatures verified on arrival)
    /// overrides it to skip the parse.
    fn check_bytes(
        &mut self,
        key: &PublicKeyBytes,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let key = key.parse().map_err(|_| SignatureError::Invalid)?;
        self.check(&key, domain, message, signature)
    }
}

/// Checks every signature with k256, each time.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectCheck;

impl SignatureCheck for DirectCheck {
    fn check(
        &mut self,
        key: &PublicKey,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        key.verify(domain, message, signature)
    }
}

/// The identity of one signature check: key, domain, message and signature together. Caches of
/// verdicts (a simulator's memo, a runtime's verified-on-arrival cache) key on it, since a check
/// is a pure function of these four.
pub fn check_id(
    key: &[u8],
    domain: &Domain,
    message: &[u8],
    signature: &Signature,
) -> crate::Digest {
    static CHECK: Domain = Domain::new("agora/check-id/v1");
    CHECK
        .hasher()
        .update(key)
        .update_u64(domain.tag().len() as u64)
        .update(domain.tag().as_bytes())
        .update_u64(message.len() as u64)
        .update(message)
        .update(signature.as_bytes())
        .finalize()
}

/// Checks every signature with k256, keeping the most recently parsed public keys so that a
/// sender's key is decompressed once, not for every transaction it signs (a few µs each, about a
/// tenth of a verification). Holds at most `capacity` keys; when full it starts over.
#[derive(Debug, Clone)]
pub struct KeyCachingCheck {
    keys: std::collections::HashMap<PublicKeyBytes, PublicKey>,
    capacity: usize,
}

impl KeyCachingCheck {
    /// A checker remembering up to `capacity` parsed keys.
    pub fn new(capacity: usize) -> Self {
        Self { keys: std::collections::HashMap::new(), capacity: capacity.max(1) }
    }
}

impl SignatureCheck for KeyCachingCheck {
    fn check(
        &mut self,
        key: &PublicKey,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        key.verify(domain, message, signature)
    }

    fn check_bytes(
        &mut self,
        key: &PublicKeyBytes,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let parsed = match self.keys.get(key) {
            Some(parsed) => *parsed,
            None => {
                let parsed = key.parse().map_err(|_| SignatureError::Invalid)?;
                if self.keys.len() >= self.capacity {
                    self.keys.clear();
                }
                self.keys.insert(*key, parsed);
                parsed
            }
        };
        parsed.verify(domain, message, signature)
    }
}

/// A secret signing key. Its bytes never appear in `Debug` output.
#[derive(Clone)]
pub struct SecretKey {
    inner: SigningKey,
    public: PublicKey,
}

impl SecretKey {
    /// The key from 32 big-endian bytes of a scalar in `1..n`.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let inner = SigningKey::from_slice(bytes).map_err(|_| KeyError::MalformedSecretKey)?;
        Ok(Self::from_signing_key(inner))
    }

    /// A key derived deterministically from `(seed, index)`, for simulations and tests: the same
    /// pair always gives the same key, and different pairs give unrelated keys. Never use this for
    /// keys that guard real value.
    pub fn from_seed(seed: u64, index: u64) -> Self {
        // A candidate is out of range with probability about 2^-128; try the next counter then.
        (0u64..)
            .find_map(|counter| {
                let candidate = domain::KEYGEN
                    .hasher()
                    .update_u64(seed)
                    .update_u64(index)
                    .update_u64(counter)
                    .finalize();
                Self::from_bytes(candidate.as_bytes()).ok()
            })
            .expect("an in-range candidate is found long before the counter wraps")
    }

    fn from_signing_key(inner: SigningKey) -> Self {
        let public = PublicKey::from_verifying_key(*inner.verifying_key());
        Self { inner, public }
    }

    /// The 32 secret bytes, for storage. Handle with care.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.inner.to_bytes());
        out
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message` under `domain`: the signature is over `domain.hash(message)`, with a
    /// deterministic nonce, so the same key, domain and message always give the same signature.
    pub fn sign(&self, domain: &Domain, message: &[u8]) -> Signature {
        let prehash = domain.hash(message);
        let signature: EcdsaSignature = self
            .inner
            .sign_prehash(prehash.as_bytes())
            .expect("signing a 32-byte prehash with a valid key cannot fail");
        Signature::from_ecdsa(signature)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public: {})", self.public)
    }
}

/// A public verification key: a point on secp256k1, always valid once constructed.
///
/// Equality, ordering and hashing follow the 33-byte compressed encoding.
#[derive(Clone, Copy)]
pub struct PublicKey {
    key: VerifyingKey,
    bytes: [u8; PUBLIC_KEY_BYTES],
}

impl PublicKey {
    fn from_verifying_key(key: VerifyingKey) -> Self {
        let point = key.to_sec1_point(true);
        let mut bytes = [0u8; PUBLIC_KEY_BYTES];
        bytes.copy_from_slice(point.as_bytes());
        Self { key, bytes }
    }

    /// Parses a 33-byte compressed SEC1 point. Uncompressed points, the identity and points not
    /// on the curve are refused, so every key has exactly one encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let bytes: [u8; PUBLIC_KEY_BYTES] =
            bytes.try_into().map_err(|_| KeyError::MalformedPublicKey)?;
        if bytes[0] != 0x02 && bytes[0] != 0x03 {
            return Err(KeyError::MalformedPublicKey);
        }
        let key =
            VerifyingKey::from_sec1_bytes(&bytes).map_err(|_| KeyError::MalformedPublicKey)?;
        Ok(Self { key, bytes })
    }

    /// The 33-byte compressed encoding.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_BYTES] {
        &self.bytes
    }

    /// Checks that `signature` was made by this key over `message` under `domain`.
    pub fn verify(
        &self,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let prehash = domain.hash(message);
        self.key
            .verify_prehash(prehash.as_bytes(), &signature.inner)
            .map_err(|_| SignatureError::Invalid)
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for PublicKey {}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl Hash for PublicKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex::write(f, &self.bytes)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        hex::serialize(&self.bytes, serializer)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes: [u8; PUBLIC_KEY_BYTES] = hex::deserialize(deserializer)?;
        Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// The 33 bytes of a compressed public key, not yet checked to be a point on the curve.
///
/// Cheap to decode and compare: where keys arrive in bulk (the sender of every transaction in a
/// block, echoed to every node several times), decoding stays a copy and the point is only
/// decompressed when a signature is actually verified. [`PublicKeyBytes::parse`] gives the
/// checked [`PublicKey`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKeyBytes([u8; PUBLIC_KEY_BYTES]);

impl PublicKeyBytes {
    /// Wraps 33 bytes without checking them.
    pub const fn new(bytes: [u8; PUBLIC_KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; PUBLIC_KEY_BYTES] {
        &self.0
    }

    /// The checked key, or why these bytes are not one.
    pub fn parse(&self) -> Result<PublicKey, KeyError> {
        PublicKey::from_bytes(&self.0)
    }

    /// Parses the key and verifies `signature`; a malformed key is an invalid signature.
    pub fn verify(
        &self,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        self.verify_with(&mut DirectCheck, domain, message, signature)
    }

    /// [`PublicKeyBytes::verify`] through `checker`.
    pub fn verify_with(
        &self,
        checker: &mut dyn SignatureCheck,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        checker.check_bytes(self, domain, message, signature)
    }
}

impl From<PublicKey> for PublicKeyBytes {
    fn from(key: PublicKey) -> Self {
        Self(key.bytes)
    }
}

impl From<&PublicKey> for PublicKeyBytes {
    fn from(key: &PublicKey) -> Self {
        Self(key.bytes)
    }
}

impl fmt::Display for PublicKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex::write(f, &self.0)
    }
}

impl fmt::Debug for PublicKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKeyBytes({self})")
    }
}

impl Serialize for PublicKeyBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        hex::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for PublicKeyBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        hex::deserialize(deserializer).map(Self)
    }
}

/// A signature, always in canonical form once constructed (`r`, `s` in range, `s` low).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    inner: EcdsaSignature,
    bytes: [u8; SIGNATURE_BYTES],
}

impl Hash for Signature {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl Signature {
    fn from_ecdsa(inner: EcdsaSignature) -> Self {
        let mut bytes = [0u8; SIGNATURE_BYTES];
        bytes.copy_from_slice(&inner.to_bytes());
        Self { inner, bytes }
    }

    /// Parses 64 bytes (`r ‖ s`, big-endian). Refuses zero or out-of-range scalars and high `s`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignatureError> {
        let bytes: [u8; SIGNATURE_BYTES] =
            bytes.try_into().map_err(|_| SignatureError::Malformed)?;
        let inner = EcdsaSignature::from_slice(&bytes).map_err(|_| SignatureError::Malformed)?;
        if inner.normalize_s() != inner {
            return Err(SignatureError::Malformed);
        }
        Ok(Self { inner, bytes })
    }

    /// The 64-byte encoding.
    pub fn as_bytes(&self) -> &[u8; SIGNATURE_BYTES] {
        &self.bytes
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature(")?;
        hex::write(f, &self.bytes)?;
        f.write_str(")")
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        hex::serialize(&self.bytes, serializer)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes: [u8; SIGNATURE_BYTES] = hex::deserialize(deserializer)?;
        Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_keys_are_deterministic_and_distinct() {
        assert_eq!(SecretKey::from_seed(1, 2).to_bytes(), SecretKey::from_seed(1, 2).to_bytes());
        assert_ne!(
            SecretKey::from_seed(1, 2).public_key(),
            SecretKey::from_seed(1, 3).public_key()
        );
        assert_ne!(
            SecretKey::from_seed(1, 2).public_key(),
            SecretKey::from_seed(2, 2).public_key()
        );
    }

    #[test]
    fn signatures_are_deterministic() {
        let key = SecretKey::from_seed(0, 0);
        assert_eq!(key.sign(&domain::VOTE, b"m"), key.sign(&domain::VOTE, b"m"));
        assert_ne!(key.sign(&domain::VOTE, b"m"), key.sign(&domain::VOTE, b"n"));
    }

    #[test]
    fn debug_never_shows_secret_bytes() {
        let key = SecretKey::from_seed(0, 0);
        let shown = format!("{key:?}");
        let secret = hex::encode(&key.to_bytes());
        assert!(!shown.contains(&secret));
        assert!(!shown.contains(&secret[..16]));
        assert!(shown.contains(&key.public_key().to_string()));
    }

    #[test]
    fn secret_key_bytes_round_trip_and_range() {
        let key = SecretKey::from_seed(5, 5);
        let again = SecretKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(SecretKey::from_bytes(&[0; 32]).unwrap_err(), KeyError::MalformedSecretKey);
        assert_eq!(SecretKey::from_bytes(&[0xff; 32]).unwrap_err(), KeyError::MalformedSecretKey);
    }

    #[test]
    fn public_keys_have_one_encoding() {
        let key = SecretKey::from_seed(9, 9);
        let pk = key.public_key();
        assert_eq!(PublicKey::from_bytes(pk.as_bytes()).unwrap(), *pk);
        // Uncompressed form of the same point is refused.
        let uncompressed = pk.key.to_sec1_point(false);
        assert_eq!(
            PublicKey::from_bytes(uncompressed.as_bytes()).unwrap_err(),
            KeyError::MalformedPublicKey
        );
        // The identity, a bad prefix, a short key.
        assert!(PublicKey::from_bytes(&[0]).is_err());
        let mut bad_prefix = *pk.as_bytes();
        bad_prefix[0] = 0x04;
        assert!(PublicKey::from_bytes(&bad_prefix).is_err());
        assert!(PublicKey::from_bytes(&pk.as_bytes()[..32]).is_err());
    }

    #[test]
    fn key_bytes_verify_lazily() {
        let key = SecretKey::from_seed(8, 8);
        let sig = key.sign(&domain::TX_SIGNATURE, b"order");
        let bytes = PublicKeyBytes::from(key.public_key());
        assert_eq!(bytes.parse().unwrap(), *key.public_key());
        assert_eq!(bytes.verify(&domain::TX_SIGNATURE, b"order", &sig), Ok(()));
        assert_eq!(
            bytes.verify(&domain::TX_SIGNATURE, b"other", &sig),
            Err(SignatureError::Invalid)
        );
        let garbage = PublicKeyBytes::new([0xff; PUBLIC_KEY_BYTES]);
        assert_eq!(garbage.parse().unwrap_err(), KeyError::MalformedPublicKey);
        assert_eq!(
            garbage.verify(&domain::TX_SIGNATURE, b"order", &sig),
            Err(SignatureError::Invalid)
        );
        let bin = postcard::to_stdvec(&bytes).unwrap();
        assert_eq!(postcard::from_bytes::<PublicKeyBytes>(&bin).unwrap(), bytes);
    }

    #[test]
    fn the_key_cache_gives_the_same_answers() {
        let key = SecretKey::from_seed(6, 6);
        let bytes = PublicKeyBytes::from(key.public_key());
        let sig = key.sign(&domain::VOTE, b"m");
        let mut cache = KeyCachingCheck::new(1);
        for _ in 0..3 {
            assert_eq!(cache.check_bytes(&bytes, &domain::VOTE, b"m", &sig), Ok(()));
            assert_eq!(
                cache.check_bytes(&bytes, &domain::VOTE, b"x", &sig),
                Err(SignatureError::Invalid)
            );
        }
        let garbage = PublicKeyBytes::new([0xff; PUBLIC_KEY_BYTES]);
        assert_eq!(
            cache.check_bytes(&garbage, &domain::VOTE, b"m", &sig),
            Err(SignatureError::Invalid)
        );
        // A second key evicts the first (capacity 1) and answers stay right.
        let other = SecretKey::from_seed(6, 7);
        let other_sig = other.sign(&domain::VOTE, b"m");
        assert_eq!(
            cache.check_bytes(
                &PublicKeyBytes::from(other.public_key()),
                &domain::VOTE,
                b"m",
                &other_sig
            ),
            Ok(())
        );
        assert_eq!(cache.check_bytes(&bytes, &domain::VOTE, b"m", &sig), Ok(()));
        assert_eq!(cache.keys.len(), 1);
    }

    #[test]
    fn high_s_is_refused() {
        use k256::elliptic_curve::ff::PrimeField;
        let key = SecretKey::from_seed(3, 1);
        let sig = key.sign(&domain::VOTE, b"m");
        // s' = n - s is the other valid-looking encoding of the same signature.
        let (r, s) = sig.inner.split_scalars();
        let high = EcdsaSignature::from_scalars(r.to_repr(), (-*s).to_repr()).unwrap();
        assert_ne!(high, sig.inner);
        assert_eq!(Signature::from_bytes(&high.to_bytes()).unwrap_err(), SignatureError::Malformed);
        // And the verifier refuses it too, were it ever to be handed one.
        let prehash = domain::VOTE.hash(b"m");
        assert!(key.public_key().key.verify_prehash(prehash.as_bytes(), &high).is_err());
    }

    #[test]
    fn serde_shapes() {
        let key = SecretKey::from_seed(4, 4);
        let pk = *key.public_key();
        let sig = key.sign(&domain::TX_SIGNATURE, b"x");
        let json = serde_json::to_string(&(pk, sig)).unwrap();
        assert_eq!(json, format!("[\"{pk}\",\"{}\"]", hex::encode(sig.as_bytes())));
        assert_eq!(serde_json::from_str::<(PublicKey, Signature)>(&json).unwrap(), (pk, sig));
        let bin = postcard::to_stdvec(&(pk, sig)).unwrap();
        assert_eq!(bin.len(), 1 + PUBLIC_KEY_BYTES + 1 + SIGNATURE_BYTES);
        assert_eq!(postcard::from_bytes::<(PublicKey, Signature)>(&bin).unwrap(), (pk, sig));
    }
}
