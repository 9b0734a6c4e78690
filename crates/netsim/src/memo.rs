//! Signature checking for simulations: memoized across nodes, counted per node.

use agora_crypto::{
    Domain, PublicKey, PublicKeyBytes, Signature, SignatureCheck, SignatureError, check_id,
};
use rustc_hash::FxHashMap;

/// Entries kept before the cache is cleared (memory bound).
const MEMO_ENTRIES_MAX: usize = 1 << 20;

/// A verification is a pure function of key, domain, message and signature, so a simulation
/// checks each distinct one with k256 once and remembers the answer. Every call is still counted,
/// so the processing model charges each node for each verification it asked for.
#[derive(Debug, Default)]
pub struct MemoCheck {
    results: FxHashMap<[u8; 32], bool>,
    calls: u64,
    computed: u64,
}

impl MemoCheck {
    /// Verifications asked for so far (each is charged as simulated CPU time).
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Verifications actually computed (the rest were remembered).
    pub fn computed(&self) -> u64 {
        self.computed
    }
}

impl MemoCheck {
    /// Answers from memory, or runs `verify` once and remembers; every call is counted.
    fn memoized(
        &mut self,
        key: &[u8],
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
        verify: impl FnOnce() -> bool,
    ) -> Result<(), SignatureError> {
        self.calls += 1;
        let id = *check_id(key, domain, message, signature).as_bytes();
        let valid = match self.results.get(&id) {
            Some(valid) => *valid,
            None => {
                self.computed += 1;
                let valid = verify();
                if self.results.len() >= MEMO_ENTRIES_MAX {
                    self.results.clear();
                }
                self.results.insert(id, valid);
                valid
            }
        };
        if valid { Ok(()) } else { Err(SignatureError::Invalid) }
    }
}

impl SignatureCheck for MemoCheck {
    fn check(
        &mut self,
        key: &PublicKey,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        self.memoized(key.as_bytes(), domain, message, signature, || {
            key.verify(domain, message, signature).is_ok()
        })
    }

    /// Remembered verdicts need no parse of the key at all.
    fn check_bytes(
        &mut self,
        key: &PublicKeyBytes,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        self.memoized(key.as_bytes(), domain, message, signature, || {
            key.verify(domain, message, signature).is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_crypto::{SecretKey, domain};

    #[test]
    fn same_answers_as_direct_and_counts_every_call() {
        let key = SecretKey::from_seed(1, 1);
        let sig = key.sign(&domain::VOTE, b"m");
        let mut memo = MemoCheck::default();
        for _ in 0..3 {
            assert_eq!(memo.check(key.public_key(), &domain::VOTE, b"m", &sig), Ok(()));
            assert!(memo.check(key.public_key(), &domain::VOTE, b"n", &sig).is_err());
            assert!(memo.check(key.public_key(), &domain::BLOCK, b"m", &sig).is_err());
        }
        assert_eq!(memo.calls(), 9);
        assert_eq!(memo.computed(), 3);
    }
}
