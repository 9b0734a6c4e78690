//! Vote keeping, written once for every protocol: count distinct signers per statement, refuse
//! non-members and duplicates, catch equivocation with both signed votes as evidence, and emit a
//! certificate exactly once, when the quorum is reached.

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
    /// The member already voted for another value in this slot; the new vote is not counted.
    Equivocation(Box<Equivocation>),
    /// The vote's round is below the pruning horizon.
    Stale,
    /// The keeper holds its maximum number of votes; this one was dropped.
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
    first_votes: BTreeMap<Slot, Vote>,
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
            first_votes: BTreeMap::new(),
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
        if let Some(first) = self.first_votes.get(&slot) {
            if first.statement == s {
                return VoteOutcome::Duplicate;
            }
            return VoteOutcome::Equivocation(Box::new(Equivocation {
                first: *first,
                second: *vote,
            }));
        }
        if self.stored >= self.votes_max {
            return VoteOutcome::Full;
        }
        self.first_votes.insert(slot, *vote);
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
        self.first_votes
            .get(&(vote.voter, s.phase, s.round, s.height))
            .is_some_and(|first| first.statement == s && first.signature == vote.signature)
    }

    /// Distinct signers of `statement` so far.
    pub fn signers(&self, statement: &Statement) -> usize {
        self.tallies.get(statement).map_or(0, |t| t.signatures.len())
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
        self.first_votes.retain(|(_, _, r, _), _| *r >= round);
        self.stored = self.first_votes.len();
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
    fn equivocation_is_caught_with_evidence() {
        let (c, secrets) = setup();
        let mut keeper = VoteKeeper::new(3, 1_000);
        let a = statement(2, b"a");
        let b = statement(2, b"b");
        let first = vote(&secrets, 1, a);
        let second = vote(&secrets, 1, b);
        keeper.add(&first, &c, &mut DirectCheck).unwrap();
        assert_eq!(
            keeper.add(&second, &c, &mut DirectCheck),
            Ok(VoteOutcome::Equivocation(Box::new(Equivocation { first, second })))
        );
        assert_eq!(keeper.signers(&b), 0, "the conflicting vote is not counted");
        // Another round is another slot.
        assert!(matches!(
            keeper.add(&vote(&secrets, 1, statement(3, b"b")), &c, &mut DirectCheck),
            Ok(VoteOutcome::Counted { .. })
        ));
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
