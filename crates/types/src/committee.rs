//! The committee: who the nodes are, their keys, and the quorum sizes each protocol needs.

use agora_crypto::{
    Domain, KeyRegistry, PublicKey, SecretKey, Signature, SignatureCheck, VerifyError,
};

use crate::ids::NodeId;

/// The most members a committee may have.
pub const COMMITTEE_SIZE_MAX: usize = 1024;

/// Why a committee could not be formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitteeError {
    /// No members.
    #[error("a committee needs at least one member")]
    Empty,
    /// More than [`COMMITTEE_SIZE_MAX`] members.
    #[error("{size} members exceed the limit of {limit}")]
    TooLarge {
        /// Members offered.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Two members share a key, which would let one signer count twice.
    #[error("members {first} and {second} share a public key")]
    DuplicateKey {
        /// The first member holding the key.
        first: NodeId,
        /// The second.
        second: NodeId,
    },
}

/// The members of a consensus instance and their public keys. Member `i` is `NodeId(i)`.
///
/// With `n` members it tolerates `f = ⌊(n − 1) / 3⌋` Byzantine ones. The quorum sizes are named
/// by what they guarantee, not by a formula, because protocols differ:
///
/// | quorum | size | guarantees |
/// |---|---|---|
/// | [`notarization_quorum`](Self::notarization_quorum) | ⌈2n/3⌉ | Streamlet: two notarizations of one epoch share an honest voter |
/// | [`byzantine_quorum`](Self::byzantine_quorum) | ⌈(n + f + 1)/2⌉ (= 2f+1 when n = 3f+1) | PBFT: any two quorums share an honest member |
/// | [`one_honest`](Self::one_honest) | f + 1 | at least one member is honest (replies, joining a view change) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committee {
    keys: KeyRegistry,
}

impl Committee {
    /// A committee of the given keys, in member order.
    pub fn new(keys: Vec<PublicKey>) -> Result<Self, CommitteeError> {
        if keys.is_empty() {
            return Err(CommitteeError::Empty);
        }
        if keys.len() > COMMITTEE_SIZE_MAX {
            return Err(CommitteeError::TooLarge { size: keys.len(), limit: COMMITTEE_SIZE_MAX });
        }
        let mut sorted: Vec<(PublicKey, usize)> = keys.iter().copied().zip(0..).collect();
        sorted.sort();
        if let Some(pair) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
            let (a, b) = (pair[0].1.min(pair[1].1), pair[0].1.max(pair[1].1));
            return Err(CommitteeError::DuplicateKey { first: node(a), second: node(b) });
        }
        Ok(Self { keys: KeyRegistry::new(keys) })
    }

    /// A committee of `n` members whose keys derive from `seed`, with their secret keys, for
    /// simulations and tests. The same `(seed, n)` always gives the same committee.
    pub fn deterministic(seed: u64, n: usize) -> Result<(Self, Vec<SecretKey>), CommitteeError> {
        if n > COMMITTEE_SIZE_MAX {
            return Err(CommitteeError::TooLarge { size: n, limit: COMMITTEE_SIZE_MAX });
        }
        let secrets: Vec<SecretKey> =
            (0..n as u64).map(|i| SecretKey::from_seed(seed, i)).collect();
        let committee = Self::new(secrets.iter().map(|s| *s.public_key()).collect())?;
        Ok((committee, secrets))
    }

    /// Number of members, `n`.
    pub fn n(&self) -> usize {
        self.keys.len()
    }

    /// Byzantine members tolerated, `f = ⌊(n − 1) / 3⌋`.
    pub fn f(&self) -> usize {
        (self.n() - 1) / 3
    }

    /// Streamlet's notarization quorum: ⌈2n/3⌉ distinct votes.
    pub fn notarization_quorum(&self) -> usize {
        (2 * self.n()).div_ceil(3)
    }

    /// PBFT's quorum (prepared, committed, stable checkpoint, new view): the smallest size such
    /// that any two quorums intersect in at least `f + 1` members, so in an honest one. Equals
    /// `2f + 1` when `n = 3f + 1`.
    pub fn byzantine_quorum(&self) -> usize {
        (self.n() + self.f() + 1).div_ceil(2)
    }

    /// `f + 1`: enough members that at least one is honest.
    pub fn one_honest(&self) -> usize {
        self.f() + 1
    }

    /// The members, in order.
    pub fn members(&self) -> impl ExactSizeIterator<Item = NodeId> + '_ {
        (0..self.n()).map(node)
    }

    /// True when `node` is a member.
    pub fn contains(&self, node: NodeId) -> bool {
        node.index() < self.n()
    }

    /// The key of `node`, if it is a member.
    pub fn key(&self, node: NodeId) -> Option<&PublicKey> {
        self.keys.get(node.index())
    }

    /// The member holding `key`, if any.
    pub fn member_of(&self, key: &PublicKey) -> Option<NodeId> {
        self.keys.position(key).map(node)
    }

    /// Checks that `signature` is `node`'s over `message` under `domain`.
    pub fn verify(
        &self,
        node: NodeId,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), VerifyError> {
        self.keys.verify(node.index(), domain, message, signature)
    }

    /// [`Committee::verify`] through `checker`.
    pub fn verify_with(
        &self,
        checker: &mut dyn SignatureCheck,
        node: NodeId,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), VerifyError> {
        self.keys.verify_with(checker, node.index(), domain, message, signature)
    }
}

fn node(index: usize) -> NodeId {
    NodeId(u16::try_from(index).expect("committees are at most COMMITTEE_SIZE_MAX members"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_table() {
        // n, f, notarization ⌈2n/3⌉, byzantine, one honest
        let table = [
            (1, 0, 1, 1, 1),
            (3, 0, 2, 2, 1),
            (4, 1, 3, 3, 2),
            (5, 1, 4, 4, 2),
            (6, 1, 4, 4, 2),
            (7, 2, 5, 5, 3),
            (10, 3, 7, 7, 4),
            (16, 5, 11, 11, 6),
            (31, 10, 21, 21, 11),
            (64, 21, 43, 43, 22),
            (100, 33, 67, 67, 34),
        ];
        for (n, f, notarization, byzantine, one_honest) in table {
            let (c, _) = Committee::deterministic(0, n).unwrap();
            assert_eq!(
                (c.n(), c.f(), c.notarization_quorum(), c.byzantine_quorum(), c.one_honest()),
                (n, f, notarization, byzantine, one_honest),
                "n = {n}"
            );
            // Any two Byzantine quorums share an honest member.
            assert!(2 * c.byzantine_quorum() > n + f, "n = {n}");
        }
    }

    #[test]
    fn bad_committees() {
        assert_eq!(Committee::new(vec![]), Err(CommitteeError::Empty));
        let k = *SecretKey::from_seed(0, 0).public_key();
        let other = *SecretKey::from_seed(0, 1).public_key();
        assert_eq!(
            Committee::new(vec![other, k, other]),
            Err(CommitteeError::DuplicateKey { first: NodeId(0), second: NodeId(2) })
        );
        assert!(matches!(
            Committee::deterministic(0, COMMITTEE_SIZE_MAX + 1),
            Err(CommitteeError::TooLarge { .. })
        ));
    }

    #[test]
    fn membership() {
        let (c, secrets) = Committee::deterministic(4, 4).unwrap();
        assert_eq!(
            c.members().collect::<Vec<_>>(),
            vec![NodeId(0), NodeId(1), NodeId(2), NodeId(3)]
        );
        assert!(c.contains(NodeId(3)) && !c.contains(NodeId(4)));
        assert_eq!(c.member_of(secrets[2].public_key()), Some(NodeId(2)));
        assert_eq!(c.key(NodeId(9)), None);
        let sig = secrets[1].sign(&agora_crypto::domain::MESSAGE, b"m");
        assert!(c.verify(NodeId(1), &agora_crypto::domain::MESSAGE, b"m", &sig).is_ok());
        assert!(c.verify(NodeId(0), &agora_crypto::domain::MESSAGE, b"m", &sig).is_err());
        assert!(c.verify(NodeId(4), &agora_crypto::domain::MESSAGE, b"m", &sig).is_err());
    }
}
