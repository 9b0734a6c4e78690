//! Digests and domain-separated hashing.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hex;

/// A 32-byte blake3 digest.
///
/// Always produced under a [`Domain`], never by hashing bare bytes. `Display` and `FromStr` use
/// 64 lowercase hex characters; serde uses hex in human-readable formats and raw bytes otherwise.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Length of a digest in bytes.
    pub const BYTES: usize = 32;

    /// The all-zero digest, used where a value has no predecessor (the parent of genesis).
    pub const ZERO: Digest = Digest([0; 32]);

    /// Wraps 32 raw bytes. Use this only for bytes that are a digest (for example decoded ones);
    /// to compute a digest, use [`Domain::hash`].
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first eight hex characters, for logs and pictures where the whole digest is noise.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex::write(f, &self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Why a string is not a [`Digest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest: {0}")]
pub struct ParseDigestError(String);

impl FromStr for Digest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        hex::decode(s).map(Self).map_err(|e| ParseDigestError(e.to_string()))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        hex::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        hex::deserialize(deserializer).map(Self)
    }
}

/// A hashing domain: a tag that separates the digests of different kinds of values.
///
/// The digest of `bytes` under a domain with tag `t` is blake3 in keyed mode, with the key
/// `blake3(t)`. Different tags give unrelated keys, so the same bytes hashed under two domains
/// give unrelated digests, and no domain's digest equals a plain blake3 hash (the keyed mode
/// sets its own flag). The key is derived once per domain and cached.
///
/// Tags follow the pattern `agora/<kind>/v<version>`; bump the version when the meaning of the
/// hashed bytes changes.
pub struct Domain {
    tag: &'static str,
    key: OnceLock<[u8; 32]>,
}

impl Domain {
    /// A domain with the given tag. `const`, so domains are declared as statics.
    pub const fn new(tag: &'static str) -> Self {
        Self { tag, key: OnceLock::new() }
    }

    /// The tag, for example `agora/block/v1`.
    pub const fn tag(&self) -> &'static str {
        self.tag
    }

    fn key(&self) -> &[u8; 32] {
        self.key.get_or_init(|| *blake3::hash(self.tag.as_bytes()).as_bytes())
    }

    /// The digest of `bytes` under this domain.
    pub fn hash(&self, bytes: &[u8]) -> Digest {
        Digest(*blake3::keyed_hash(self.key(), bytes).as_bytes())
    }

    /// An incremental hasher under this domain, for values hashed piece by piece.
    pub fn hasher(&self) -> DomainHasher {
        DomainHasher(blake3::Hasher::new_keyed(self.key()))
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain({})", self.tag)
    }
}

/// An incremental hasher bound to one [`Domain`]; see [`Domain::hasher`].
///
/// Callers that feed variable-length pieces must make the sequence unambiguous themselves (for
/// example by feeding a length before each variable-length piece).
#[derive(Clone)]
pub struct DomainHasher(blake3::Hasher);

impl DomainHasher {
    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(bytes);
        self
    }

    /// Feeds a `u64` as 8 little-endian bytes.
    pub fn update_u64(&mut self, value: u64) -> &mut Self {
        self.update(&value.to_le_bytes())
    }

    /// Feeds a digest's 32 bytes.
    pub fn update_digest(&mut self, digest: &Digest) -> &mut Self {
        self.update(digest.as_bytes())
    }

    /// The digest of everything fed so far.
    pub fn finalize(&self) -> Digest {
        Digest(*self.0.finalize().as_bytes())
    }
}

impl fmt::Debug for DomainHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DomainHasher")
    }
}

/// The domains agora itself hashes and signs under. Each tag is used for exactly one purpose.
pub mod domain {
    use super::Domain;

    /// Identity of a transaction: its sender, nonce and payload.
    pub static TX: Domain = Domain::new("agora/tx/v1");
    /// What a transaction's sender signs: the transaction's identity digest.
    pub static TX_SIGNATURE: Domain = Domain::new("agora/tx-signature/v1");
    /// The payload digest of a batch: every transaction of it, signatures included.
    pub static BATCH: Domain = Domain::new("agora/batch/v1");
    /// Identity of a block: the canonical encoding of its header.
    pub static BLOCK: Domain = Domain::new("agora/block/v1");
    /// What a voter signs: the canonical encoding of a vote's statement.
    pub static VOTE: Domain = Domain::new("agora/vote/v1");
    /// Consensus messages that are signed whole (proposals, view changes, …).
    pub static MESSAGE: Domain = Domain::new("agora/message/v1");
    /// Application state digests (for example an order book after a block).
    pub static STATE: Domain = Domain::new("agora/state/v1");
    /// One price level of an order book, hashed on its own so that a state digest can reuse the
    /// digests of levels a block did not touch.
    pub static STATE_LEVEL: Domain = Domain::new("agora/state-level/v1");
    /// Deterministic key derivation for simulations.
    pub static KEYGEN: Domain = Domain::new("agora/keygen/v1");
    /// What a leader signs to propose a block: the block digest.
    pub static PROPOSAL: Domain = Domain::new("agora/proposal/v1");
    /// Leader election by a public hash of the round.
    pub static LEADER: Domain = Domain::new("agora/leader/v1");
    /// The market's canonical execution order inside a block: a transaction's sort key.
    pub static CANONICAL_ORDER: Domain = Domain::new("agora/canonical-order/v1");
    /// Simulation traces, for determinism checks.
    pub static TRACE: Domain = Domain::new("agora/trace/v1");
    /// What a member signs to prove its identity on a network link: the link's Noise handshake
    /// hash and its side of the handshake.
    pub static NET_HELLO: Domain = Domain::new("agora/net-hello/v1");
    /// The committee a network link is for, bound into its Noise handshake as the prologue.
    pub static NET_COMMITTEE: Domain = Domain::new("agora/net-committee/v1");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_separate_the_same_bytes() {
        let bytes = b"the same bytes";
        let all = [
            &domain::TX,
            &domain::TX_SIGNATURE,
            &domain::BATCH,
            &domain::BLOCK,
            &domain::VOTE,
            &domain::MESSAGE,
            &domain::STATE,
            &domain::STATE_LEVEL,
            &domain::KEYGEN,
            &domain::LEADER,
            &domain::TRACE,
            &domain::PROPOSAL,
            &domain::CANONICAL_ORDER,
            &domain::NET_HELLO,
            &domain::NET_COMMITTEE,
        ];
        let mut digests: Vec<Digest> = all.iter().map(|d| d.hash(bytes)).collect();
        digests.push(Digest(*blake3::hash(bytes).as_bytes()));
        let count = digests.len();
        digests.sort();
        digests.dedup();
        assert_eq!(digests.len(), count, "two domains (or plain blake3) collided");
    }

    #[test]
    fn incremental_equals_one_shot() {
        let mut h = domain::BLOCK.hasher();
        h.update(b"abc").update_u64(7).update(b"def");
        let mut whole = b"abc".to_vec();
        whole.extend_from_slice(&7u64.to_le_bytes());
        whole.extend_from_slice(b"def");
        assert_eq!(h.finalize(), domain::BLOCK.hash(&whole));
    }

    #[test]
    fn known_answer() {
        // Pins the construction: keyed blake3 with key = blake3(tag).
        let key = blake3::hash(b"agora/block/v1");
        let expected = blake3::keyed_hash(key.as_bytes(), b"");
        assert_eq!(domain::BLOCK.hash(b"").as_bytes(), expected.as_bytes());
    }

    #[test]
    fn hex_display_and_parse() {
        let d = domain::TX.hash(b"x");
        let s = d.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<Digest>(), Ok(d));
        assert_eq!(s.to_uppercase().parse::<Digest>(), Ok(d));
        assert!("".parse::<Digest>().is_err());
        assert!(s[..63].parse::<Digest>().is_err());
        assert!(format!("{}z", &s[..63]).parse::<Digest>().is_err());
        assert_eq!(d.short(), s[..8]);
    }

    #[test]
    fn serde_is_hex_in_json_and_raw_in_binary() {
        let d = domain::TX.hash(b"y");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        let bin = postcard::to_stdvec(&d).unwrap();
        assert_eq!(bin.len(), 33, "one length byte, then the 32 raw bytes");
        assert_eq!(&bin[1..], d.as_bytes());
        assert_eq!(postcard::from_bytes::<Digest>(&bin).unwrap(), d);
        // Wrong lengths are errors, not panics.
        assert!(postcard::from_bytes::<Digest>(&bin[..20]).is_err());
        assert!(postcard::from_bytes::<Digest>(&[31; 32]).is_err());
        assert!(serde_json::from_str::<Digest>("\"abcd\"").is_err());
        assert!(serde_json::from_str::<Digest>("17").is_err());
    }
}
