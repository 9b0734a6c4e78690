//! Verify-ahead: a pool of threads verifies transaction signatures before their blocks are
//! applied, and leaves the verdicts in each replica's cache.

use std::sync::{Arc, Mutex};

use agora_crypto::{
    Domain, KeyCachingCheck, PublicKey, PublicKeyBytes, Signature, SignatureCheck, SignatureError,
    check_id,
};
use agora_types::Transaction;
use crossbeam_channel::Receiver;
use rustc_hash::FxHashMap;

/// Verdicts computed ahead of time lie in a replica's cache at most this many.
pub(crate) const VERDICTS_MAX: usize = 1 << 20;

pub(crate) fn verdict_key(
    key: &PublicKeyBytes,
    domain: &Domain,
    message: &[u8],
    signature: &Signature,
) -> [u8; 32] {
    *check_id(key.as_bytes(), domain, message, signature).as_bytes()
}

/// One replica's verdicts: `None` while a worker has it, then the result.
#[derive(Default)]
pub(crate) struct Verdicts(pub(crate) Mutex<FxHashMap<[u8; 32], Option<bool>>>);

impl Verdicts {
    /// Claims `key` for a worker; false if it is already claimed or known.
    pub(crate) fn claim(&self, key: [u8; 32]) -> bool {
        let Ok(mut map) = self.0.lock() else { return false };
        if map.len() >= VERDICTS_MAX {
            map.clear();
        }
        map.insert(key, None).is_none()
    }

    /// Records a verdict computed elsewhere (a submitter that verified the signature).
    pub(crate) fn known(&self, key: [u8; 32], valid: bool) {
        let Ok(mut map) = self.0.lock() else { return };
        if map.len() >= VERDICTS_MAX {
            map.clear();
        }
        map.insert(key, Some(valid));
    }

    pub(crate) fn record(&self, key: [u8; 32], valid: bool) {
        if let Ok(mut map) = self.0.lock()
            && let Some(entry) = map.get_mut(&key)
        {
            *entry = Some(valid);
        }
    }

    /// The verdict, if a worker finished it; otherwise the claim is withdrawn (the caller
    /// verifies now, and the worker will skip it). Either way the entry is forgotten: a block is
    /// applied once.
    pub(crate) fn take(&self, key: &[u8; 32]) -> Option<bool> {
        self.0.lock().ok()?.remove(key).flatten()
    }

    /// True while a claimed job is still wanted (not done, not withdrawn).
    pub(crate) fn wanted(&self, key: &[u8; 32]) -> bool {
        self.0.lock().is_ok_and(|map| matches!(map.get(key), Some(None)))
    }
}

/// A replica's checker: transaction signatures from the verdict cache when ready, anything else
/// (and misses) verified here, with parsed keys cached.
pub(crate) struct VerdictCheck {
    /// `None` when verify-ahead is off: nothing to look up, so no per-transaction key hash.
    pub(crate) verdicts: Option<Arc<Verdicts>>,
    pub(crate) inline: KeyCachingCheck,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

impl SignatureCheck for VerdictCheck {
    fn check(
        &mut self,
        key: &PublicKey,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        self.inline.check(key, domain, message, signature)
    }

    fn check_bytes(
        &mut self,
        key: &PublicKeyBytes,
        domain: &Domain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let Some(verdicts) = &self.verdicts else {
            return self.inline.check_bytes(key, domain, message, signature);
        };
        match verdicts.take(&verdict_key(key, domain, message, signature)) {
            Some(valid) => {
                self.hits += 1;
                if valid { Ok(()) } else { Err(SignatureError::Invalid) }
            }
            None => {
                self.misses += 1;
                self.inline.check_bytes(key, domain, message, signature)
            }
        }
    }
}

/// A transaction to verify ahead of time for one replica.
pub(crate) struct Job {
    pub(crate) verdicts: Arc<Verdicts>,
    pub(crate) key: [u8; 32],
    pub(crate) tx: Transaction,
}

/// A verifier thread: verifies what replicas hand it and leaves the verdicts in their caches.
pub(crate) fn verifier(jobs: Receiver<Job>) {
    let mut check = KeyCachingCheck::new(65_536);
    while let Ok(job) = jobs.recv() {
        // The replica may have needed it already and verified it itself.
        if !job.verdicts.wanted(&job.key) {
            continue;
        }
        let valid = job.tx.verify_with(&mut check).is_ok();
        job.verdicts.record(job.key, valid);
    }
}
