//! Vote keeping, written once for every protocol: count distinct signers per statement, refuse
//! non-members and duplicates, catch equivocation with both signed votes as evidence, and emit a
//! certificate exactly once, when the quorum is reached.
//!
//! A member that votes for two values in one slot has its vote counted for *each* value: a
//! quorum is a count of signers per value, and protocols' safety arguments already allow
//! Byzantine members to sign anything. Counting only the first vote would let an equivocator
//! starve honest nodes of a quorum that others reached. The keeper records the equivocation as
//! evidence and counts at most [`VALUES_PER_SLOT_MAX`] values per member and slot.

use std::collections::BTreeMap;

use agora_crypto::{Signature, SignatureCheck};
use agora_types::{
    Certificate, Committee, Height, NodeId, Phase, Round, Statement, Vote, VoteError,
};

/// Two votes by one member for different values in the same slot (phase, round, height):
/// proof that the member is Byzantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Equivocation {
    /// The vote counted first.
    pub first: Vote,
    /// The conflicting vote (not counted).
    pub second: Vote,
}

/// Distinct values one member may have counted in one slot; further ones are dropped.
pub const VALUES_PER_SLOT_MAX: usize = 4;

/// Evidence records kept (the count goes on beyond).
const EVIDENCE_MAX: usize = 1_024;

/// What adding a vote did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// Counted; `signers` distinct members have now signed this statement.
    Counted {
        /// Distinct signers so far.
        signers: usize,
    },
    /// Counted, and the statement just reached the quorum: here is its certificate. Emitted
    /// once per statement.
    Certified(Certificate),
    /// This member's vote for this statement was already counted (an echo or a replay).
    Duplicate,
    /// The vote's round is below the pruning horizon.
    Stale,
    /// The keeper holds its maximum number of votes (or this member's maximum of values in this
    /// slot); this one was dropped.
    Full,
}

/// One slot a member votes in at most once.
type Slot = (NodeId, Phase, Round, Height);

/// Counts votes per [`Statement`]; see the module docs.
///
/// Memory is bounded by `votes_max`; callers also prune rounds they are done with
/// ([`VoteKeeper::prune_below`]).
#[derive(Debug, Clone)]
pub struct VoteKeeper {
    quorum: usize,
    votes_max: usize,
    stored: usize,
    horizon: Round,
    tallies: BTreeMap<Statement, Tally>,
    /// Each member's votes per slot, first one first.
    cast: BTreeMap<Slot, Vec<Vote>>,
    evidence: Vec<Equivocation>,
    equivocations: u64,
}

#[derive(Debug, Clone, Default)]
struct Tally {
    signatures: BTreeMap<NodeId, Signature>,
    certified: bool,
}

impl VoteKeeper {
    /// A keeper that certifies at `quorum` distinct signers and stores at most `votes_max` votes.
    pub fn new(quorum: usize, votes_max: usize) -> Self {
        assert!(quorum > 0, "a quorum of zero would certify anything");
        Self {
            quorum,
            votes_max,
            stored: 0,
            horizon: Round(0),
            tallies: BTreeMap::new(),
            cast: BTreeMap::new(),
            evidence: Vec::new(),
            equivocations: 0,
        }
    }

    /// The quorum size.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// Verifies `vote` (membership and signature, with `checker`) and adds it. A vote already
    /// counted is recognised before its signature is checked, so echoes cost nothing.
    pub fn add(
        &mut self,
        vote: &Vote,
        committee: &Committee,
        checker: &mut dyn SignatureCheck,
    ) -> Result<VoteOutcome, VoteError> {
        if vote.statement.round < self.horizon {
            return Ok(VoteOutcome::Stale);
        }
        if self.is_counted(vote) {
            return Ok(VoteOutcome::Duplicate);
        }
        vote.verify_with(committee, checker)?;
        Ok(self.add_verified(vote))
    }

    /// Adds a vote whose signature the caller has verified.
    pub fn add_verified(&mut self, vote: &Vote) -> VoteOutcome {
        let s = vote.statement;
        if s.round < self.horizon {
            return VoteOutcome::Stale;
        }
        let slot = (vote.voter, s.phase, s.round, s.height);
        let earlier = self.cast.get(&slot).map_or(&[][..], Vec::as_slice);
        if earlier.iter().any(|v| v.statement == s) {
            return VoteOutcome::Duplicate;
        }
        if self.stored >= self.votes_max || earlier.len() >= VALUES_PER_SLOT_MAX {
            return VoteOutcome::Full;
        }
        if let Some(first) = earlier.first() {
            self.equivocations += 1;
            if self.evidence.len() < EVIDENCE_MAX {
                self.evidence.push(Equivocation { first: *first, second: *vote });
            }
        }
        self.cast.entry(slot).or_default().push(*vote);
        self.stored += 1;
        let tally = self.tallies.entry(s).or_default();
        tally.signatures.insert(vote.voter, vote.signature);
        let signers = tally.signatures.len();
        if signers >= self.quorum && !tally.certified {
            tally.certified = true;
            let cert = Certificate::new(s, tally.signatures.iter().map(|(n, sig)| (*n, *sig)));
            return VoteOutcome::Certified(cert);
        }
        VoteOutcome::Counted { signers }
    }

    fn is_counted(&self, vote: &Vote) -> bool {
        let s = vote.statement;
        self.cast.get(&(vote.voter, s.phase, s.round, s.height)).is_some_and(|votes| {
            votes.iter().any(|v| v.statement == s && v.signature == vote.signature)
        })
    }

    /// Equivocations seen: each time a member's vote arrived for a second (third, …) value in
    /// one slot.
    pub fn equivocations(&self) -> u64 {
        self.equivocations
    }

    /// Evidence of the first equivocations seen (both signed votes), at most 1,024 records.
    pub fn evidence(&self) -> &[Equivocation] {
        &self.evidence
    }

    /// Distinct signers of `statement` so far.
    pub fn signers(&self, statement: &Statement) -> usize {
        self.tallies.get(statement).map_or(0, |t| t.signatures.len())
    }

    /// True when `node`'s vote for `statement` has been counted.
    pub fn has_signed(&self, statement: &Statement, node: NodeId) -> bool {
        self.tallies.get(statement).is_some_and(|t| t.signatures.contains_key(&node))
    }

    /// The votes counted for `statement` so far, as a certificate (whatever their number), leaving
    /// out `exclude` (for example a primary whose own vote must not count).
    pub fn certificate_of(&self, statement: &Statement, exclude: Option<NodeId>) -> Certificate {
        let signatures = self.tallies.get(statement).into_iter().flat_map(|t| t.signatures.iter());
        Certificate::new(
            *statement,
            signatures.filter(|(n, _)| Some(**n) != exclude).map(|(n, sig)| (*n, *sig)),
        )
    }

    /// Keeps only the votes whose statement satisfies `keep` (protocols that retire votes by height
    /// rather than by round use this).
    pub fn retain(&mut self, mut keep: impl FnMut(&Statement) -> bool) {
        self.tallies.retain(|s, _| keep(s));
        for votes in self.cast.values_mut() {
            votes.retain(|v| keep(&v.statement));
        }
        self.cast.retain(|_, votes| !votes.is_empty());
        self.stored = self.cast.values().map(Vec::len).sum();
    }

    /// True once `statement` has reached the quorum.
    pub fn is_certified(&self, statement: &Statement) -> bool {
        self.tallies.get(statement).is_some_and(|t| t.certified)
    }

    /// Forgets every vote of rounds below `round`, and refuses such votes from now on.
    pub fn prune_below(&mut self, round: Round) {
        if round <= self.horizon {
            return;
        }
        self.horizon = round;
        self.tallies.retain(|s, _| s.round >= round);
        self.cast.retain(|(_, _, r, _), _| *r >= round);
        self.stored = self.cast.values().map(Vec::len).sum();
    }

    /// Votes held.
    pub fn len(&self) -> usize {
        self.stored
    }

    /// True when no vote is held.
    pub fn is_empty(&self) -> bool {
        self.stored == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_crypto::{DirectCheck, SecretKey, domain};

    fn setup() -> (Committee, Vec<SecretKey>) {
        Committee::deterministic(77, 4).unwrap()
    }

    fn statement(round: u64, value: &[u8]) -> Statement {
        Statement {
            phase: Phase::Vote,
            round: Round(round),
            height: Height(round),
            value: domain::BLOCK.hash(value),
        }
    }

    fn vote(secrets: &[SecretKey], node: u16, s: Statement) -> Vote {
        Vote::sign(s, NodeId(node), &secrets[usize::from(node)])
    }

    #[test]
    fn certifies_once_at_quorum_of_distinct_signers() {
        let (c, secrets) = setup();
        let mut keeper = VoteKeeper::new(c.notarization_quorum(), 1_000);
        let s = statement(1, b"block");
        let mut check = DirectCheck;
        assert_eq!(
            keeper.add(&vote(&secrets, 0, s), &c, &mut check),
            Ok(VoteOutcome::Counted { signers: 1 })
        );
        assert_eq!(keeper.add(&vote(&secrets, 0, s), &c, &mut check), Ok(VoteOutcome::Duplicate));
        assert_eq!(
            keeper.add(&vote(&secrets, 1, s), &c, &mut check),
            Ok(VoteOutcome::Counted { signers: 2 })
        );
        let Ok(VoteOutcome::Certified(cert)) = keeper.add(&vote(&secrets, 3, s), &c, &mut check)
        else {
            panic!("the third distinct vote reaches ⌈2n/3⌉ = 3");
        };
        assert_eq!(cert.verify_for(&c, 3, &s), Ok(()));
        assert_eq!(cert.signers().collect::<Vec<_>>(), vec![NodeId(0), NodeId(1), NodeId(3)]);
        // The fourth vote counts but does not certify again.
        assert_eq!(
            keeper.add(&vote(&secrets, 2, s), &c, &mut check),
            Ok(VoteOutcome::Counted { signers: 4 })
        );
        assert!(keeper.is_certified(&s));
    }

    #[test]
    fn refuses_forgeries_and_non_members() {
        let (c, secrets) = setup();
        let mut keeper = VoteKeeper::new(3, 1_000);
        let s = statement(1, b"block");
        let forged = Vote { voter: NodeId(2), ..vote(&secrets, 1, s) };
        assert!(keeper.add(&forged, &c, &mut DirectCheck).is_err());
        let outsider = Vote { voter: NodeId(9), ..vote(&secrets, 1, s) };
        assert!(keeper.add(&outsider, &c, &mut DirectCheck).is_err());
        assert_eq!(keeper.signers(&s), 0);
        assert!(keeper.is_empty());
    }

    #[test]
    fn equivocation_is_caught_with_evidence_and_both_votes_count() {
        let (c, secrets) = setup();
        let mut keeper = VoteKeeper::new(3, 1_000);
        let a = statement(2, b"a");
        let b = statement(2, b"b");
        let first = vote(&secrets, 1, a);
        let second = vote(&secrets, 1, b);
        keeper.add(&first, &c, &mut DirectCheck).unwrap();
        assert_eq!(
            keeper.add(&second, &c, &mut DirectCheck),
            Ok(VoteOutcome::Counted { signers: 1 })
        );
        assert_eq!(keeper.equivocations(), 1);
        assert_eq!(keeper.evidence(), &[Equivocation { first, second }]);
        assert_eq!(
            (keeper.signers(&a), keeper.signers(&b)),
            (1, 1),
            "a vote counts for each value"
        );
        // Replays of either vote are duplicates, not new equivocations.
        assert_eq!(keeper.add(&second, &c, &mut DirectCheck), Ok(VoteOutcome::Duplicate));
        assert_eq!(keeper.equivocations(), 1);
        // A member cannot flood one slot with values.
        for i in 0..10u8 {
            let _ = keeper.add(&vote(&secrets, 1, statement(2, &[i])), &c, &mut DirectCheck);
        }
        let values = (0..10u8).filter(|i| keeper.signers(&statement(2, &[*i])) > 0).count();
        assert_eq!(values + 2, VALUES_PER_SLOT_MAX);
        // Another round is another slot.
        assert!(matches!(
            keeper.add(&vote(&secrets, 1, statement(3, b"b")), &c, &mut DirectCheck),
            Ok(VoteOutcome::Counted { .. })
        ));
    }

    #[test]
    fn certificates_of_partial_tallies_and_retention() {
        let (c, secrets) = setup();
        let mut keeper = VoteKeeper::new(3, 1_000);
        let s = statement(4, b"x");
        for n in [0, 2, 3] {
            keeper.add(&vote(&secrets, n, s), &c, &mut DirectCheck).unwrap();
        }
        assert!(keeper.has_signed(&s, NodeId(2)) && !keeper.has_signed(&s, NodeId(1)));
        let without_0 = keeper.certificate_of(&s, Some(NodeId(0)));
        assert_eq!(without_0.signers().collect::<Vec<_>>(), vec![NodeId(2), NodeId(3)]);
        assert_eq!(without_0.verify(&c, 2), Ok(()));
        keeper.retain(|st| st.height.0 > 4);
        assert!(keeper.is_empty() && keeper.signers(&s) == 0);
    }

    #[test]
    fn bounded_and_prunable() {
        let (c, secrets) = setup();
        let mut keeper = VoteKeeper::new(3, 2);
        keeper.add(&vote(&secrets, 0, statement(1, b"x")), &c, &mut DirectCheck).unwrap();
        keeper.add(&vote(&secrets, 1, statement(1, b"x")), &c, &mut DirectCheck).unwrap();
        assert_eq!(
            keeper.add(&vote(&secrets, 2, statement(1, b"x")), &c, &mut DirectCheck),
            Ok(VoteOutcome::Full)
        );
        keeper.prune_below(Round(2));
        assert!(keeper.is_empty());
        assert_eq!(
            keeper.add(&vote(&secrets, 2, statement(1, b"x")), &c, &mut DirectCheck),
            Ok(VoteOutcome::Stale)
        );
        assert!(matches!(
            keeper.add(&vote(&secrets, 2, statement(2, b"x")), &c, &mut DirectCheck),
            Ok(VoteOutcome::Counted { signers: 1 })
        ));
    }
}
