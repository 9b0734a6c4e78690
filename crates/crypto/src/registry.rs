//! The public keys of a committee.

use crate::digest::Domain;
use crate::sign::{DirectCheck, PublicKey, Signature, SignatureCheck, SignatureError};

/// Why a member's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The claimed signer is not a member.
    #[error("unknown member {member} (committee of {size})")]
    UnknownMember {
        /// The claimed member position.
        member: usize,
        /// The committee's size.
        size: usize,
    },
    /// The signature is malformed or does not verify under the member's key.
    #[error("bad signature from member {member}: {reason}")]
    BadSignature {
        /// The claimed member position.
        member: usize,
        /// What was wrong with it.
        reason: SignatureError,
    },
}

/// The public keys of a committee, indexed by member position `0..len()`.
///
/// Consensus crates wrap positions in their own node id type; this crate knows only positions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyRegistry {
    keys: Vec<PublicKey>,
}

impl KeyRegistry {
    /// A registry of the given keys, member `i` holding `keys[i]`.
    pub fn new(keys: Vec<PublicKey>) -> Self {
        Self { keys }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there are no members.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key of `member`, if it is one.
    pub fn get(&self, member: usize) -> Option<&PublicKey> {
        self.keys.get(member)
    }

    /// All keys, in member order.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// The position of the member holding `key`, if any.
    pub fn position(&self, key: &PublicKey) -> Option<usize> {
        self.keys.iter().position(|k| k == key)
    }

    /// Checks that `signature` is `member`'s over `message` under `domain`.
    pub fn verify(
        &self,
        member: usize,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), VerifyError> {
        self.verify_with(&mut DirectCheck, member, domain, message, signature)
    }

    /// [`KeyRegistry::verify`] through `checker`.
    pub fn verify_with(
        &self,
        checker: &mut dyn SignatureCheck,
        member: usize,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), VerifyError> {
        let key =
            self.get(member).ok_or(VerifyError::UnknownMember { member, size: self.len() })?;
        checker
            .check(key, domain, message, signature)
            .map_err(|reason| VerifyError::BadSignature { member, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SecretKey, domain};

    #[test]
    fn verifies_members_only() {
        let secrets: Vec<SecretKey> = (0..4).map(|i| SecretKey::from_seed(11, i)).collect();
        let registry = KeyRegistry::new(secrets.iter().map(|s| *s.public_key()).collect());
        assert_eq!(registry.len(), 4);
        assert_eq!(registry.position(secrets[2].public_key()), Some(2));
        let sig = secrets[1].sign(&domain::VOTE, b"m");
        assert_eq!(registry.verify(1, &domain::VOTE, b"m", &sig), Ok(()));
        assert_eq!(
            registry.verify(2, &domain::VOTE, b"m", &sig),
            Err(VerifyError::BadSignature { member: 2, reason: SignatureError::Invalid })
        );
        assert_eq!(
            registry.verify(4, &domain::VOTE, b"m", &sig),
            Err(VerifyError::UnknownMember { member: 4, size: 4 })
        );
        assert_eq!(
            registry.verify(usize::MAX, &domain::VOTE, b"m", &sig),
            Err(VerifyError::UnknownMember { member: usize::MAX, size: 4 })
        );
    }
}
