//! Hashing and signatures for agora.
//!
//! Everything agora hashes or signs goes through this crate, always under a [`Domain`]: a tag
//! such as `agora/block/v1` that is mixed into the hash, so that a digest of one kind of value can
//! never be taken for a digest of another, even over the same bytes.
//!
//! - [`Digest`]: a 32-byte blake3 output. Hex in human-readable formats, raw bytes otherwise.
//! - [`Domain`]: a domain tag, with [`Domain::hash`] and an incremental [`DomainHasher`];
//!   [`domain`] lists the tags agora itself uses.
//! - [`SecretKey`], [`PublicKey`], [`Signature`]: ECDSA over secp256k1 (k256) with deterministic
//!   nonces (RFC 6979). A signature is made over the domain-tagged digest of a message, so a
//!   signature for one domain never verifies in another.
//! - [`PublicKeyBytes`]: an unchecked key encoding, parsed only when a signature is verified.
//! - [`KeyRegistry`]: the public keys of a committee, indexed by member position, with
//!   [`KeyRegistry::verify`].
//!
//! The signature scheme is an implementation detail behind these types: no caller names k256, so
//! a second scheme can be added here without touching any consensus engine.
//!
//! ```
//! use agora_crypto::{domain, SecretKey};
//!
//! let key = SecretKey::from_seed(7, 0);
//! let sig = key.sign(&domain::VOTE, b"vote for block 42");
//! assert!(key.public_key().verify(&domain::VOTE, b"vote for block 42", &sig).is_ok());
//! // The same bytes under another domain are a different statement.
//! assert!(key.public_key().verify(&domain::BLOCK, b"vote for block 42", &sig).is_err());
//! ```

mod digest;
mod hex;
mod registry;
mod sign;

pub use digest::{Digest, Domain, DomainHasher, ParseDigestError, domain};
pub use registry::{KeyRegistry, VerifyError};
pub use sign::{
    DirectCheck, KeyCachingCheck, KeyError, PUBLIC_KEY_BYTES, PublicKey, PublicKeyBytes,
    SIGNATURE_BYTES, SecretKey, Signature, SignatureCheck, SignatureError, check_id,
};
