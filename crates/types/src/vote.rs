//! Votes and certificates.

use agora_crypto::{
    Digest, DirectCheck, SecretKey, Signature, SignatureCheck, VerifyError, domain,
};
use serde::{Deserialize, Serialize};

use crate::committee::Committee;
use crate::ids::{Height, NodeId, Round};

/// Which step of a protocol a vote belongs to. Votes of different phases never count together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// The single vote of one-phase protocols (Streamlet).
    Vote,
    /// PBFT's PREPARE.
    Prepare,
    /// PBFT's COMMIT.
    Commit,
    /// A checkpoint: the value is an application state digest at a height.
    Checkpoint,
    /// PBFT's PRE-PREPARE: the primary's assignment of a value to a sequence number in a view.
    PrePrepare,
    /// Simplex's vote for the dummy block of an iteration: the iteration produced no block this
    /// node will wait for (its timer fired). The value is [`Digest::ZERO`].
    Skip,
    /// Simplex's finalize vote: this node left the iteration through the notarization of the
    /// block named by the value, before its timer fired, and will never vote to skip it.
    Finalize,
    /// HotStuff's timeout: this node gives up on the view in the round field and will not vote
    /// in it. The height field carries the view of the highest quorum certificate it holds; the
    /// value is [`Digest::ZERO`].
    Timeout,
}

/// What a vote is about: a value (usually a block digest) at a round, height and phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Statement {
    /// The protocol step.
    pub phase: Phase,
    /// The epoch or view.
    pub round: Round,
    /// The height or sequence number.
    pub height: Height,
    /// The value voted for: a block digest, or a state digest for checkpoints.
    pub value: Digest,
}

/// The largest encoding of a statement and a voter (phase, round, height, digest, node id).
const SIGNED_BYTES_MAX: usize = 1 + 10 + 10 + 33 + 3;

impl Statement {
    /// The bytes `voter` signs under `agora/vote/v1`: the statement and the voter, so that a
    /// signature can never be replayed as another member's.
    fn signed_bytes<'b>(&self, voter: NodeId, buf: &'b mut [u8; SIGNED_BYTES_MAX]) -> &'b [u8] {
        postcard::to_slice(&(self, voter), buf).expect("a statement always fits its buffer")
    }
}

/// Why a vote was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VoteError {
    /// The voter is not a member, or the signature is not theirs over this statement.
    #[error(transparent)]
    Signature(#[from] VerifyError),
}

/// A member's signed statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vote {
    /// What is voted for.
    pub statement: Statement,
    /// Who votes.
    pub voter: NodeId,
    /// The voter's signature over statement and voter.
    pub signature: Signature,
}

impl Vote {
    /// `voter` signs `statement` with `key`.
    pub fn sign(statement: Statement, voter: NodeId, key: &SecretKey) -> Self {
        let mut buf = [0u8; SIGNED_BYTES_MAX];
        let signature = key.sign(&domain::VOTE, statement.signed_bytes(voter, &mut buf));
        Self { statement, voter, signature }
    }

    /// Checks that the voter is a member and signed this statement.
    pub fn verify(&self, committee: &Committee) -> Result<(), VoteError> {
        self.verify_with(committee, &mut DirectCheck)
    }

    /// [`Vote::verify`] through `checker`.
    pub fn verify_with(
        &self,
        committee: &Committee,
        checker: &mut dyn SignatureCheck,
    ) -> Result<(), VoteError> {
        verify_signature(committee, checker, &self.statement, self.voter, &self.signature)?;
        Ok(())
    }
}

fn verify_signature(
    committee: &Committee,
    checker: &mut dyn SignatureCheck,
    statement: &Statement,
    voter: NodeId,
    signature: &Signature,
) -> Result<(), VerifyError> {
    let mut buf = [0u8; SIGNED_BYTES_MAX];
    let message = statement.signed_bytes(voter, &mut buf);
    committee.verify_with(checker, voter, &domain::VOTE, message, signature)
}

/// Why a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// Fewer distinct signers than the quorum.
    #[error("{signers} signers, the quorum is {quorum}")]
    TooFewSigners {
        /// Signers present.
        signers: usize,
        /// Signers needed.
        quorum: usize,
    },
    /// A signer appears twice.
    #[error("signer {0} appears twice")]
    DuplicateSigner(NodeId),
    /// Signers are not in increasing order (the one canonical form).
    #[error("signers are not in increasing order at {0}")]
    Unordered(NodeId),
    /// A signer is not a member.
    #[error("signer {0} is not a member")]
    NonMember(NodeId),
    /// A signature is not its signer's over the certified statement.
    #[error("signature of {0} does not verify")]
    BadSignature(NodeId),
    /// The certificate is valid but certifies something else than was expected.
    #[error("certificate is for {found:?}, expected {expected:?}")]
    WrongStatement {
        /// What it certifies.
        found: Statement,
        /// What the caller needed.
        expected: Statement,
    },
}

/// Proof that a quorum of distinct members signed one statement: the statement once, and each
/// signer's signature, ordered by signer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    statement: Statement,
    #[serde(deserialize_with = "crate::codec::deserialize_vec_unreserved")]
    signatures: Vec<(NodeId, Signature)>,
}

impl Certificate {
    /// A certificate over `statement` from the given signatures, put in canonical order; when a
    /// signer appears more than once, its first signature is kept. The signatures are not
    /// checked here: use [`Certificate::verify`] on anything that was not checked vote by vote.
    pub fn new(
        statement: Statement,
        signatures: impl IntoIterator<Item = (NodeId, Signature)>,
    ) -> Self {
        let mut signatures: Vec<(NodeId, Signature)> = signatures.into_iter().collect();
        signatures.sort_by_key(|(node, _)| *node);
        signatures.dedup_by_key(|(node, _)| *node);
        Self { statement, signatures }
    }

    /// What is certified.
    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    /// The signers, in increasing order.
    pub fn signers(&self) -> impl ExactSizeIterator<Item = NodeId> + '_ {
        self.signatures.iter().map(|(node, _)| *node)
    }

    /// The signatures, by signer.
    pub fn signatures(&self) -> &[(NodeId, Signature)] {
        &self.signatures
    }

    /// Checks that at least `quorum` distinct members signed the statement. Structural checks
    /// (order, duplicates, membership, count) come before any signature is verified, so a bad
    /// certificate costs little to refuse.
    pub fn verify(&self, committee: &Committee, quorum: usize) -> Result<(), CertificateError> {
        self.verify_with(committee, quorum, &mut DirectCheck)
    }

    /// [`Certificate::verify`] through `checker`.
    pub fn verify_with(
        &self,
        committee: &Committee,
        quorum: usize,
        checker: &mut dyn SignatureCheck,
    ) -> Result<(), CertificateError> {
        for pair in self.signatures.windows(2) {
            let (a, b) = (pair[0].0, pair[1].0);
            if a == b {
                return Err(CertificateError::DuplicateSigner(b));
            }
            if a > b {
                return Err(CertificateError::Unordered(b));
            }
        }
        if let Some((node, _)) = self.signatures.iter().find(|(node, _)| !committee.contains(*node))
        {
            return Err(CertificateError::NonMember(*node));
        }
        if self.signatures.len() < quorum {
            return Err(CertificateError::TooFewSigners { signers: self.signatures.len(), quorum });
        }
        for (node, signature) in &self.signatures {
            verify_signature(committee, checker, &self.statement, *node, signature)
                .map_err(|_| CertificateError::BadSignature(*node))?;
        }
        Ok(())
    }

    /// [`Certificate::verify`], and that the certificate is for `expected`.
    pub fn verify_for(
        &self,
        committee: &Committee,
        quorum: usize,
        expected: &Statement,
    ) -> Result<(), CertificateError> {
        if self.statement != *expected {
            return Err(CertificateError::WrongStatement {
                found: self.statement,
                expected: *expected,
            });
        }
        self.verify(committee, quorum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    fn statement(value: &[u8]) -> Statement {
        Statement {
            phase: Phase::Prepare,
            round: Round(1),
            height: Height(5),
            value: domain::BLOCK.hash(value),
        }
    }

    fn setup() -> (Committee, Vec<SecretKey>) {
        Committee::deterministic(21, 4).unwrap()
    }

    fn votes(secrets: &[SecretKey], s: Statement, who: &[u16]) -> Vec<(NodeId, Signature)> {
        who.iter()
            .map(|&i| (NodeId(i), Vote::sign(s, NodeId(i), &secrets[usize::from(i)]).signature))
            .collect()
    }

    #[test]
    fn votes_verify_for_their_signer_only() {
        let (c, secrets) = setup();
        let v = Vote::sign(statement(b"b"), NodeId(1), &secrets[1]);
        assert_eq!(v.verify(&c), Ok(()));
        // Claimed by another member, or a non-member.
        assert!(Vote { voter: NodeId(2), ..v }.verify(&c).is_err());
        assert!(Vote { voter: NodeId(7), ..v }.verify(&c).is_err());
        // Any change to the statement.
        for s in [
            Statement { phase: Phase::Commit, ..v.statement },
            Statement { round: Round(2), ..v.statement },
            Statement { height: Height(6), ..v.statement },
            Statement { value: domain::BLOCK.hash(b"c"), ..v.statement },
        ] {
            assert!(Vote { statement: s, ..v }.verify(&c).is_err(), "{s:?}");
        }
        let back: Vote = codec::decode(&codec::encode(&v).unwrap()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn certificate_table() {
        let (c, secrets) = setup();
        let s = statement(b"b");
        let q = c.byzantine_quorum();
        let good = Certificate::new(s, votes(&secrets, s, &[2, 0, 1]));
        assert_eq!(good.signers().collect::<Vec<_>>(), vec![NodeId(0), NodeId(1), NodeId(2)]);
        let other = statement(b"other");
        let forged_sig = votes(&secrets, other, &[1])[0].1;
        let raw = |sigs: Vec<(NodeId, Signature)>| Certificate { statement: s, signatures: sigs };
        let v = votes(&secrets, s, &[0, 1, 2, 3]);

        let cases: Vec<(&str, Certificate, Result<(), CertificateError>)> = vec![
            ("quorum of distinct members", good.clone(), Ok(())),
            ("all four", raw(v.clone()), Ok(())),
            (
                "too few",
                raw(v[..2].to_vec()),
                Err(CertificateError::TooFewSigners { signers: 2, quorum: q }),
            ),
            (
                "duplicate signer",
                raw(vec![v[0], v[1], v[1]]),
                Err(CertificateError::DuplicateSigner(NodeId(1))),
            ),
            ("unordered", raw(vec![v[1], v[0], v[2]]), Err(CertificateError::Unordered(NodeId(0)))),
            (
                "non-member",
                raw(vec![v[0], v[1], (NodeId(4), v[2].1)]),
                Err(CertificateError::NonMember(NodeId(4))),
            ),
            (
                "signature over another digest",
                raw(vec![v[0], (NodeId(1), forged_sig), v[2]]),
                Err(CertificateError::BadSignature(NodeId(1))),
            ),
            (
                "signature of another member",
                raw(vec![v[0], (NodeId(1), v[2].1), v[2]]),
                Err(CertificateError::BadSignature(NodeId(1))),
            ),
        ];
        for (name, cert, expected) in cases {
            assert_eq!(cert.verify(&c, q), expected, "{name}");
        }
        // A valid certificate presented for another statement.
        assert_eq!(
            good.verify_for(&c, q, &other),
            Err(CertificateError::WrongStatement { found: s, expected: other })
        );
        assert_eq!(good.verify_for(&c, q, &s), Ok(()));
        // The constructor dedups and sorts.
        let messy = Certificate::new(s, vec![v[2], v[0], v[2], v[1]]);
        assert_eq!(messy, good);
        let back: Certificate = codec::decode(&codec::encode(&good).unwrap()).unwrap();
        assert_eq!(back, good);
    }
}
