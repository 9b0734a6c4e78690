//! PBFT (Castro & Liskov, "Practical Byzantine Fault Tolerance", OSDI 1999; TOCS 2002) as a sans-IO
//! engine for agora.
//!
//! n = 3f+1 replicas; the primary of view v is replica v mod n. Each section of the paper has its
//! file, with the pure message structures and their checks beneath them in `messages.rs` (as
//! Streamlet's `tree.rs`) and the control flow in this file's [`Protocol`] impl:
//!
//! | file | the paper's section |
//! |---|---|
//! | `requests.rs` | §4.1 the client (requests), §4.4 the request timer |
//! | `normal.rs` | §4.2 normal-case operation |
//! | `replies.rs` | §4.1 the client (replies) |
//! | `checkpoint.rs` | §4.3 garbage collection |
//! | `transfer.rs` | TOCS 2002, state transfer |
//! | `view_change.rs` | §4.4 view changes; §4.5.2 liveness |
//! | `persist.rs` | beyond the paper: what is journalled before it is said, and the restore |
//!
//! ## The rules
//!
//! Each rule in the words of Castro and Liskov (OSDI 1999 unless marked TOCS), the function that
//! implements it, and the test that pins it; "TOCS" marks the 2002 paper, §4.5.2 is the OSDI
//! paper's liveness argument. Scenario tests are in `tests/scenarios.rs`, stall tests in
//! `tests/stalls.rs`, restarts in `tests/persistence.rs`, and the swarm's in `agora-lab`'s
//! `tests/swarm.rs`.
//!
//! | § | rule | function | pinned by |
//! |---|---|---|---|
//! | 4.1 | "a client sends the request to the primary"; a backup that receives one passes it on | `requests.rs` `forward` | `a_crashed_primary_is_replaced_and_no_request_is_lost` |
//! | 4.2 | "the primary assigns a sequence number n to the request … multicasts a pre-prepare message" | `normal.rs` `propose` | `normal_case_prepares_at_2_delta_commits_at_3_delta_and_replies_at_4_delta` |
//! | 4.2 | a backup accepts a pre-prepare if the signatures and the digest are correct, "it is in view v", it "has not accepted a pre-prepare message for view v and sequence number n containing a different digest", and h < n ≤ H | `normal.rs` `on_pre_prepare`, `check_block`; `messages.rs` `PrePrepare::check` | `an_equivocating_primary_cannot_make_replicas_execute_different_batches` |
//! | 4.2 | *prepared*: the request, its pre-prepare "and 2f prepares from different backups that match the pre-prepare" | `normal.rs` `advance` (asserted) | `the_campaign_catches_pbft_counting_the_pre_prepare_as_a_prepare`, `the_campaign_catches_a_pbft_quorum_one_vote_short` |
//! | 4.2 | *committed-local*: prepared "and 2f+1 commits (possibly including its own) from different replicas" | `normal.rs` `advance` | `the_campaign_catches_a_pbft_quorum_one_vote_short` |
//! | 4.2 | a replica executes a request once committed-local "and (its) state reflects the sequential execution of all requests with lower sequence numbers" | `normal.rs` `execute_ready`, `execute` (asserted) | `normal_case_prepares_at_2_delta_commits_at_3_delta_and_replies_at_4_delta` |
//! | 4.1 | "the client waits for f+1 replies … from different replicas, and with the same … result" | `replies.rs` `check_client` | `normal_case_prepares_at_2_delta_commits_at_3_delta_and_replies_at_4_delta` |
//! | 4.3 | every K requests a replica multicasts CHECKPOINT(n, d); 2f+1 matching ones are a *stable checkpoint* | `normal.rs` `execute`; `checkpoint.rs` `on_checkpoint`, `check_stable` | `the_log_stays_bounded_over_10_000_batches` |
//! | 4.3 | at a stable checkpoint the replica "discards all pre-prepare, prepare, and commit messages with sequence number less than or equal to n"; h = the stable checkpoint, H = h + L | `checkpoint.rs` `make_stable` (asserted) | `the_log_stays_bounded_over_10_000_batches`, `a_million_hostile_messages_leave_state_and_memory_bounded` |
//! | TOCS | a replica behind a stable checkpoint fetches the state and checks it against the checkpoint's digest | `transfer.rs` `start_fetch`, `on_fetch`, `on_blocks` | `a_replica_partitioned_away_catches_up_after_healing` |
//! | TOCS | beyond the paper: a replica that sees a sequence number committed above its executed log, or that restarts, fetches the blocks between and takes each on its own commit certificate (2f+1 COMMITs for its digest at its number), paging while the answers bring blocks | `transfer.rs` `on_blocks`, `ask_what_was_missed`, `continue_catch_up`; `normal.rs` `note_committed`; `messages.rs` `FetchedBlock::certified` | `a_backup_that_sees_a_later_sequence_number_committed_fetches_the_gap_on_commit_certificates`, `a_replica_restarted_after_the_load_stopped_asks_for_what_it_missed`, `a_replica_healed_as_the_load_ends_takes_the_last_blocks_on_their_commit_certificates` |
//! | 4.4 | beyond the paper: the request timer expiring while a later number is known committed asks for the missing blocks first, and starts the view change at the next expiry if nothing came | `transfer.rs` `defer_view_change` | `a_backup_whose_catch_up_brings_nothing_changes_view_at_the_next_expiry` |
//! | 4.4 | "if the timer of backup i expires in view v, the backup starts a view change to move the system to view v+1" and multicasts VIEW-CHANGE(v+1, n, C, P) | `requests.rs` `ensure_request_timer`; `view_change.rs` `start_view_change` | `a_crashed_primary_is_replaced_and_no_request_is_lost`, `a_crashed_primary_is_replaced_even_when_only_f_backups_hold_requests` |
//! | 4.4 | the primary of v+1 with 2f+1 valid view changes multicasts NEW-VIEW(v+1, V, O), O re-issuing every prepared request between the stable checkpoint and the highest prepared one, "a null request" in the gaps | `view_change.rs` `send_new_view`; `messages.rs` `compute_o` | `a_request_prepared_in_view_0_survives_the_view_change_with_its_sequence_number_and_digest`, `o_names_each_prepared_digest_once_and_new_view_carries_each_block_once` |
//! | 4.4 | a backup accepts NEW-VIEW if V is valid and O is what V says, "by performing a computation similar to the one used by the primary" | `view_change.rs` `check_new_view`, `enter_new_view` | `a_stripped_view_change_keeps_its_signature_but_is_refused_when_received_directly` |
//! | 4.5.2 | "if the timer expires before it receives a valid NEW-VIEW … it starts the view change for view v+2 but this time it will wait 2T" | `view_change.rs` `new_view_wait` (capped) | `with_the_primaries_of_views_0_and_1_down_the_new_view_waits_grow_t_then_2t`, `the_new_view_wait_stops_doubling_at_its_cap` |
//! | 4.5.2 | "if a replica receives a set of f+1 valid VIEW-CHANGE messages from other replicas for views greater than its current view, it sends a VIEW-CHANGE message for the smallest view in the set" | `view_change.rs` `record_view_change` | `replicas_split_across_two_view_changes_come_together` |
//! | TOCS | messages are retransmitted until their effect is seen: VIEW-CHANGE is resent, NEW-VIEW and view changes are relayed to a replica that is behind | `view_change.rs` `help_lagging`, `help_view_change`; the `ResendViewChange` timer | `a_replica_restarted_in_a_view_change_rejoins_and_its_requests_are_final`, `pbft_stalls_after_many_view_changes_before_gst` |
//! | 4.4 | a PRE-PREPARE that overtakes its view's NEW-VIEW is not lost (beyond the paper: the network may reorder them) | `normal.rs` `hold_early_pre_prepare`, `replay_early_pre_prepares` | `a_pre_prepare_that_overtakes_its_new_view_is_not_lost` |
//! | 4.2 | a backup "has not accepted a pre-prepare message for view v and sequence number n containing a different digest", also after a crash: the pre-prepare is journalled before the PREPARE leaves | `normal.rs` `accept_pre_prepare`; `persist.rs` `restore_from` | `a_prepare_leaves_only_after_its_pre_prepare_is_journalled`, `a_restarted_backup_refuses_a_second_digest_for_its_slot_and_an_amnesiac_one_prepares_it` |
//! | 4.4 | VIEW-CHANGE carries P, the replica's prepared certificates, also after a crash; a replica that asked for v+1 takes nothing more of v | `normal.rs` `advance`; `view_change.rs` `start_view_change`; `persist.rs` | `a_restarted_replica_names_its_prepared_request_in_its_view_change_and_keeps_the_view` |
//! | 4.2, 4.3 | a restarted replica executes again what it had committed, in order, and rejoins (beyond the paper: its journal, pruned at stable checkpoints) | `persist.rs` `resume_log`, `checkpoint` | `a_replica_restarted_from_its_journal_rejoins_and_agrees` |
//!
//! ## In more detail
//!
//! - **Requests**: clients' transactions reach the primary (backups forward them; counted as
//!   `forward`). A transaction is executed once: the mempool refuses known ids, and a pre-prepare
//!   repeating an executed or in-flight transaction is refused (`check_block`). Several sequence
//!   numbers may be in flight at once (pipelining within the watermarks).
//! - **Prepare / commit**: the pre-prepare does not count as a prepare, and neither does a
//!   prepare signed by the primary.
//! - **View change**: a backup's timer runs while a request it knows of is not executed; on
//!   expiry it sends its waiting requests to every replica (as a client without a reply retransmits
//!   to all, so that f+1 timers run even when only f replicas' clients were ignored). V travels
//!   with the proofs' blocks stripped (signatures cover the stripped form), so each block is sent
//!   once, in O. The wait for NEW-VIEW backs off (T, 2T, 4T, …, capped at
//!   [`PbftConfig::new_view_doublings_max`] doublings). A PRE-PREPARE that overtakes the NEW-VIEW
//!   of its view is held (bounded, [`PbftConfig::early_pre_prepares_max`]) and checked once the
//!   view is installed, since no primary sends a pre-prepare twice; a replica that restarts mid
//!   view change sends its VIEW-CHANGE again and re-arms its timers; a replica asked by a
//!   VIEW-CHANGE for a lower view than the one it is changing to relays the signed view changes it
//!   holds for that view and above, since their senders may have crashed.
//! - **State transfer**: the fetched blocks are executed only if their chained digest is the
//!   certified log digest of the checkpoint, or one by one, each on its own commit certificate.
//!   Between checkpoints, that is how a replica behind catches up: without it, one that missed
//!   the last blocks before the load stopped waited for a checkpoint that never came, and its
//!   request timer took it into a view change no one else wanted (the runtime's restart test,
//!   under load).
//!
//! The agreed value d is the digest of a block the primary builds once: a request prepared in one
//! view is re-issued in the next with the same block, so with the same sequence number and digest.
//! Every queue and map is bounded; messages outside the watermarks, for views far ahead, or
//! otherwise invalid are dropped and counted by reason ([`PbftStats`]).

mod checkpoint;
mod config;
mod drop;
mod messages;
mod normal;
mod persist;
mod replies;
mod requests;
mod transfer;
mod view_change;

use std::collections::{BTreeMap, BTreeSet};

use agora_consensus::{
    BlockStatus, BlockView, ChainView, ConfigError, Ctx, Equivocation, MempoolError, Protocol,
    RecentIds, RestoreError, VoteKeeper,
};
use agora_crypto::{Digest, Domain, SecretKey};
use agora_types::bytes::Bytes;
use agora_types::{Block, Certificate, Committee, NodeId, Phase, SeqNo, Transaction, View};
use rustc_hash::FxHashMap;
use serde::Serialize;

pub use config::{LOG_WINDOW_MAX, PbftConfig, PbftWeakening};
pub use drop::PbftDrop;
pub use messages::{
    CheckpointProof, FetchedBlock, NewView, PbftKind, PbftMessage, PrePrepare, PreparedProof,
    Reply, ViewChange, checkpoint_statement, compute_o, null_block, primary, statement,
};

/// The executed-log digest chain: `d_n = H(d_(n-1) ‖ block_n)`; checkpoints sign it.
static LOG: Domain = Domain::new("agora/pbft-log/v1");

/// The digest of the empty executed log.
pub fn genesis_log_digest() -> Digest {
    LOG.hash(b"")
}

fn chain(log: &Digest, block: &Digest) -> Digest {
    LOG.hasher().update_digest(log).update_digest(block).finalize()
}

/// PBFT's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PbftTimer {
    /// A request is pending in this view: on expiry, move to the next view.
    Request(View),
    /// Waiting for NEW-VIEW of this view.
    NewView(View),
    /// Retry state transfer.
    Fetch,
    /// Ask again for the committed blocks between the executed log and a sequence number seen
    /// committed above it.
    CatchUp,
    /// While a view change to this view is pending, send this replica's VIEW-CHANGE again (a
    /// partition or loss may have dropped it; the paper's retransmission).
    ResendViewChange(View),
}

/// What a replica dropped or did, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PbftStats {
    /// Messages dropped, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// View changes this replica started.
    pub view_changes: u64,
    /// New views it entered.
    pub new_views: u64,
    /// Checkpoints that became stable.
    pub stable_checkpoints: u64,
    /// Blocks executed after state transfer.
    pub transferred_blocks: u64,
    /// Of those, blocks taken on their own commit certificate (catching up), not a checkpoint's.
    pub certified_blocks: u64,
    /// Request-timer expiries that fetched the committed blocks this replica lacked instead of
    /// starting a view change.
    pub view_changes_deferred: u64,
    /// Pre-prepares it sent (as primary).
    pub pre_prepares: u64,
    /// Transactions left out at execution because an earlier sequence number executed them.
    pub duplicates_skipped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Normal,
    ViewChanging,
}

#[derive(Debug, Clone)]
struct Slot {
    pre_prepare: PrePrepare,
    prepared_at: Option<u64>,
    committed: bool,
    commit_sent: bool,
    /// The journal record that carries the pre-prepare (see `persist.rs`).
    record: u64,
    /// The commit certificate a restored replica read from its journal (its votes are gone).
    commit_certificate: Option<Certificate>,
}

#[derive(Debug, Clone)]
struct Executed {
    block: Block,
    prepared_at: Option<u64>,
    executed_at: u64,
    /// The journal record that carries the block.
    record: u64,
    /// Its commit certificate, served to replicas catching up: none for a block executed again
    /// after a restart (its votes were not journalled) or vouched for by a stable checkpoint.
    commit: Option<Certificate>,
}

/// A sequence number seen committed (2f + 1 COMMITs) above the executed log: the replica is
/// behind, and asks the signers for the blocks between.
#[derive(Debug, Clone)]
struct CatchUp {
    to: SeqNo,
    from: Vec<NodeId>,
    round: usize,
}

/// One PBFT replica; see the crate docs.
#[derive(Debug)]
pub struct Pbft {
    config: PbftConfig,
    committee: Committee,
    n: usize,
    quorum: usize,
    me: NodeId,
    key: SecretKey,
    view: View,
    status: Status,
    last_normal_view: View,
    slots: BTreeMap<SeqNo, Slot>,
    prepared: BTreeMap<SeqNo, PreparedProof>,
    votes: VoteKeeper,
    checkpoints: VoteKeeper,
    next_seq: SeqNo,
    last_executed: SeqNo,
    log_digest: Digest,
    own_checkpoints: BTreeMap<SeqNo, Digest>,
    stable: CheckpointProof,
    executed: BTreeMap<SeqNo, Executed>,
    executed_ids: RecentIds,
    view_changes: BTreeMap<View, BTreeMap<NodeId, ViewChange>>,
    new_view_sent: Option<View>,
    /// The NEW-VIEW that started the current view (none in view 0), for replicas that missed it.
    current_new_view: Option<NewView>,
    /// When each lagging replica was last sent `current_new_view`.
    new_view_relayed_at: FxHashMap<NodeId, u64>,
    /// When each replica asking for a lower view was last sent the view changes we hold.
    view_changes_relayed_at: FxHashMap<NodeId, u64>,
    /// This replica's latest VIEW-CHANGE, resent until its view is installed.
    my_view_change: Option<ViewChange>,
    /// Pre-prepares for views not yet entered, by (view, sequence number), checked when the
    /// view is installed; at most `early_pre_prepares_max`, the nearest views kept.
    early_pre_prepares: BTreeMap<(View, SeqNo), PrePrepare>,
    attempts: u32,
    request_timer: bool,
    fetch_target: Option<CheckpointProof>,
    fetch_buffer: BTreeMap<SeqNo, Block>,
    fetch_round: usize,
    catch_up: Option<CatchUp>,
    /// The executed position at which the request timer last deferred a view change to catch up:
    /// it defers once per position, so a catch-up that cannot be served still ends in a view
    /// change.
    deferred_at: Option<SeqNo>,
    /// Restored from a journal: at start it asks its peers for what it missed while down.
    restored: bool,
    submitted_at: FxHashMap<Digest, u64>,
    replies: BTreeMap<SeqNo, BTreeMap<Digest, BTreeSet<NodeId>>>,
    client_latencies_ns: Vec<u64>,
    stats: PbftStats,
    /// For each prepared proof, the journal record that carries its block.
    prepared_records: BTreeMap<SeqNo, u64>,
    /// Blocks a restored replica had executed from state transfer, to execute again at start.
    recovered_fetched: BTreeMap<SeqNo, (Block, u64, Option<Certificate>)>,
    /// Records this engine's journal holds: the position the next one gets.
    records_written: u64,
    records_since_checkpoint: u64,
    /// A handler asked for a checkpoint, written when it ends.
    checkpoint_due: bool,
}

/// Latencies kept at most (one per client transaction).
const CLIENT_LATENCIES_MAX: usize = 10_000_000;

impl Pbft {
    /// Replica `me` of `committee`, signing with `key`; an error names the first bad setting (see
    /// [`PbftConfig::validate`]) or a `me` outside the committee.
    pub fn new(
        config: PbftConfig,
        committee: Committee,
        me: NodeId,
        key: SecretKey,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        ConfigError::member(&committee, me)?;
        let n = committee.n();
        let quorum = if config.weakened(PbftWeakening::QuorumOneSmaller) {
            committee.byzantine_quorum() - 1
        } else {
            committee.byzantine_quorum()
        };
        let votes_max = (config.log_window as usize + 2) * n * 4;
        Ok(Self {
            votes: VoteKeeper::new(quorum.max(2) - 1, votes_max),
            checkpoints: VoteKeeper::new(quorum, votes_max),
            stable: CheckpointProof::genesis(genesis_log_digest()),
            log_digest: genesis_log_digest(),
            config,
            committee,
            n,
            quorum,
            me,
            key,
            view: View(0),
            status: Status::Normal,
            last_normal_view: View(0),
            slots: BTreeMap::new(),
            prepared: BTreeMap::new(),
            next_seq: SeqNo(1),
            last_executed: SeqNo(0),
            own_checkpoints: BTreeMap::new(),
            executed: BTreeMap::new(),
            executed_ids: RecentIds::new(config.executed_memory),
            view_changes: BTreeMap::new(),
            new_view_sent: None,
            current_new_view: None,
            new_view_relayed_at: FxHashMap::default(),
            view_changes_relayed_at: FxHashMap::default(),
            my_view_change: None,
            early_pre_prepares: BTreeMap::new(),
            attempts: 0,
            request_timer: false,
            fetch_target: None,
            fetch_buffer: BTreeMap::new(),
            fetch_round: 0,
            catch_up: None,
            deferred_at: None,
            restored: false,
            submitted_at: FxHashMap::default(),
            replies: BTreeMap::new(),
            client_latencies_ns: Vec::new(),
            stats: PbftStats::default(),
            prepared_records: BTreeMap::new(),
            recovered_fetched: BTreeMap::new(),
            records_written: 0,
            records_since_checkpoint: 0,
            checkpoint_due: false,
        })
    }

    /// The current view (the target view while a view change is under way).
    pub fn view(&self) -> View {
        self.view
    }

    /// True while waiting for a NEW-VIEW.
    pub fn is_view_changing(&self) -> bool {
        self.status == Status::ViewChanging
    }

    /// The last executed sequence number.
    pub fn last_executed(&self) -> SeqNo {
        self.last_executed
    }

    /// The last stable checkpoint (h).
    pub fn stable_checkpoint(&self) -> SeqNo {
        self.stable.seq
    }

    /// Entries in the message log (slots above the stable checkpoint), for boundedness checks.
    pub fn log_len(&self) -> usize {
        self.slots.len() + self.prepared.len()
    }

    /// Votes held (prepares, commits and checkpoints), for boundedness checks.
    pub fn votes_held(&self) -> usize {
        self.votes.len() + self.checkpoints.len()
    }

    /// Client-side finality latencies (submission → f+1 matching replies) of the transactions
    /// clients submitted to this replica.
    pub fn client_latencies_ns(&self) -> &[u64] {
        &self.client_latencies_ns
    }

    /// Two votes of one member for different values in one slot, as this replica saw them
    /// (prepares, commits, pre-prepares and checkpoints; the first records kept).
    pub fn equivocation_evidence(&self) -> impl Iterator<Item = &Equivocation> {
        self.votes.evidence().iter().chain(self.checkpoints.evidence())
    }

    /// Drops and events.
    pub fn stats(&self) -> &PbftStats {
        &self.stats
    }

    fn primary_of(&self, view: View) -> NodeId {
        primary(view, self.n)
    }

    fn is_primary(&self) -> bool {
        self.primary_of(self.view) == self.me
    }

    fn drop_message(&mut self, reason: PbftDrop) {
        *self.stats.dropped.entry(reason.as_str()).or_default() += 1;
    }

    /// H = h + L.
    fn high_watermark(&self) -> SeqNo {
        self.stable.seq + self.config.log_window
    }

    /// h < n ≤ H.
    fn in_window(&self, seq: SeqNo) -> bool {
        seq > self.stable.seq && seq <= self.high_watermark()
    }
}

impl Protocol for Pbft {
    type Message = PbftMessage;
    type Timer = PbftTimer;

    fn restore(&mut self, records: &[Bytes]) -> Result<(), RestoreError> {
        self.restore_from(records)
    }

    fn on_start(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.resume_log(ctx);
        // A restarted replica has lost its timers.
        self.request_timer = false;
        self.ensure_request_timer(ctx);
        if self.status == Status::ViewChanging {
            self.resume_view_change(ctx);
        }
        if self.fetch_target.is_some() {
            self.start_fetch(ctx);
        }
        if std::mem::take(&mut self.restored) {
            self.ask_what_was_missed(ctx);
        }
        self.propose(ctx);
        self.flush_checkpoint(ctx);
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, message: PbftMessage) {
        self.handle_message(ctx, from, message);
        self.flush_checkpoint(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, timer: PbftTimer) {
        self.handle_timer(ctx, timer);
        self.flush_checkpoint(ctx);
    }

    fn on_accepted(&mut self, ctx: &mut Ctx<'_, Self>, tx: Transaction) {
        if self.submitted_at.len() < CLIENT_LATENCIES_MAX {
            self.submitted_at.insert(tx.id(), ctx.now_ns());
        }
        if self.is_primary() && self.status == Status::Normal {
            self.propose(ctx);
        } else {
            self.forward(ctx, vec![tx]);
            self.ensure_request_timer(ctx);
        }
        self.flush_checkpoint(ctx);
    }
}

impl Pbft {
    fn handle_message(&mut self, ctx: &mut Ctx<'_, Self>, from: NodeId, message: PbftMessage) {
        match message {
            PbftMessage::Forward(txs) => {
                for tx in txs.into_iter().take(self.config.batch.txs_max) {
                    if let Err(MempoolError::Full { .. }) = ctx.mempool().insert(tx) {
                        self.drop_message(PbftDrop::MempoolFull);
                        break;
                    }
                }
                self.ensure_request_timer(ctx);
                self.propose(ctx);
            }
            PbftMessage::PrePrepare(pp) => {
                self.help_lagging(ctx, from, pp.view());
                self.on_pre_prepare(ctx, pp)
            }
            PbftMessage::Prepare(v) => {
                self.help_lagging(ctx, from, View(v.statement.round.0));
                self.on_vote(ctx, v, Phase::Prepare)
            }
            PbftMessage::Commit(v) => {
                self.help_lagging(ctx, from, View(v.statement.round.0));
                self.on_vote(ctx, v, Phase::Commit)
            }
            PbftMessage::Reply(r) => self.on_reply(ctx, from, r),
            PbftMessage::Checkpoint(v) => self.on_checkpoint(ctx, v),
            PbftMessage::ViewChange(vc) => {
                // Asking to move into (or below) our view: it missed how we got here.
                if vc.new_view <= self.view {
                    self.help_lagging(ctx, from, View(vc.new_view.0.saturating_sub(1)));
                    self.help_view_change(ctx, from, vc.new_view);
                }
                self.on_view_change(ctx, *vc)
            }
            PbftMessage::NewView(nv) => self.on_new_view(ctx, *nv),
            PbftMessage::Fetch { from: first, to } => self.on_fetch(ctx, from, first, to),
            PbftMessage::Blocks(blocks) => self.on_blocks(ctx, from, blocks),
        }
    }

    fn handle_timer(&mut self, ctx: &mut Ctx<'_, Self>, timer: PbftTimer) {
        match timer {
            PbftTimer::Request(view) if view == self.view && self.status == Status::Normal => {
                self.request_timer = false;
                let pending_slot = self.slots.range(self.last_executed + 1..).next().is_some();
                if (pending_slot || !ctx.mempool().is_empty()) && !self.defer_view_change(ctx) {
                    // As a PBFT client that gets no reply retransmits to every replica, this
                    // replica (standing in for its clients) sends its waiting requests to all:
                    // their timers start too, so f+1 replicas come to want the view change even
                    // when only f saw requests the failed primary ignored.
                    for forward in self.pending_forwards(ctx, &|_| false) {
                        ctx.broadcast(forward);
                    }
                    self.start_view_change(ctx, view + 1);
                }
            }
            PbftTimer::NewView(view)
                if view == self.view && self.status == Status::ViewChanging =>
            {
                self.start_view_change(ctx, view + 1);
            }
            PbftTimer::Fetch if self.fetch_target.is_some() => self.start_fetch(ctx),
            PbftTimer::CatchUp => self.continue_catch_up(ctx),
            PbftTimer::ResendViewChange(view)
                if view == self.view && self.status == Status::ViewChanging =>
            {
                if let Some(vc) = &self.my_view_change {
                    ctx.broadcast(PbftMessage::ViewChange(Box::new(vc.clone())));
                }
                // Requests that reached only this replica (their forward lost before GST) must
                // not wait for a view only it wants: like a client's retransmission, to all.
                for forward in self.pending_forwards(ctx, &|_| false) {
                    ctx.broadcast(forward);
                }
                ctx.set_timer(PbftTimer::ResendViewChange(view), self.config.view_timeout_ns);
            }
            _ => {}
        }
    }
}

impl ChainView for Pbft {
    /// Executed blocks still retained (finalized) and the log above them (proposed or prepared).
    fn block_views(&self) -> Vec<BlockView> {
        let view_of = |block: &Block, status, prepared_at: Option<u64>, finalized_at| BlockView {
            digest: block.digest(),
            parent: block.parent(),
            round: block.round(),
            height: block.height(),
            proposer: block.proposer(),
            txs: block.batch().len(),
            status,
            votes: 0,
            proposed_at_ns: block.header().created_at_ns,
            notarized_at_ns: prepared_at,
            finalized_at_ns: finalized_at,
        };
        let mut views: Vec<BlockView> = self
            .executed
            .values()
            .map(|e| view_of(&e.block, BlockStatus::Finalized, e.prepared_at, Some(e.executed_at)))
            .collect();
        for (seq, slot) in self.slots.range(self.last_executed + 1..) {
            let status = if slot.prepared_at.is_some() {
                BlockStatus::Notarized
            } else {
                BlockStatus::Proposed
            };
            let _ = seq;
            views.push(view_of(&slot.pre_prepare.block, status, slot.prepared_at, None));
        }
        views
    }
}
